import type { AttackStarter } from "../attack.ts";
import { asyncMessagesAttack } from "./async_messages.ts";
import { channelHoldersAttack } from "./channel_holders.ts";
import { halfFramesAttack } from "./half_frames.ts";
import { poisonedNameAttack } from "./poisoned_name.ts";
import { handshakeFloodAttack } from "./handshake_flood.ts";
import { pingFloodAttack } from "./ping_flood.ts";
import { probeFloodAttack } from "./probe_flood.ts";
import { randomBytesAttack } from "./random_bytes.ts";
import { slowLorisAttack } from "./slow_loris.ts";
import { strangerAttack } from "./stranger.ts";

/** Every attack of the torture benchmark by name; each runs in a process of its own. */
export const ATTACKS: Record<string, { label: string; start: AttackStarter }> = {
  "random-bytes": { label: "random-byte peers", start: randomBytesAttack },
  "ping-flood": { label: "PING flood, never reading", start: pingFloodAttack },
  "slow-loris": { label: "slow-loris handshakes", start: slowLorisAttack },
  "handshake-flood": { label: "handshake flood past the session limits", start: handshakeFloodAttack },
  "probe-flood": { label: "UDP probe flood from many sources", start: probeFloodAttack },
  stranger: { label: "strangers: untrusted keys asking for channels", start: strangerAttack },
  "async-messages": { label: "a trusted host's message flood at an app that awaits", start: asyncMessagesAttack },
  "half-frames": { label: "half-sent frames at the memory budget", start: halfFramesAttack },
  "channel-holders": { label: "a trusted host holding every slot with channels, from many addresses", start: channelHoldersAttack },
  "poisoned-name": { label: "a poisoned name answer aimed at a client (the rogue must get nothing)", start: poisonedNameAttack },
};
