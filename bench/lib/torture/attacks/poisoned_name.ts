import * as packet from "@leichtgewicht/dns-packet";
import dgram from "node:dgram";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createClient } from "../../../../src/client/client.ts";
import { CLIENT_KEY_FILE, loadOrCreateClientKey } from "../../../../src/client/client_key.ts";
import { silentLogger } from "../../../../src/logger.ts";
import { startServer } from "../../../../src/server/start_server.ts";
import type { PerilinkServer } from "../../../../src/server/server.ts";
import type { AttackStarter, Counters } from "../attack.ts";
import { Stopper } from "../stopper.ts";

const NAME = "device.torture";
const ROGUE = "127.0.55.2";

/**
 * A poisoned name aimed at a client under test (the client side of the
 * torture): a DNS server on 127.0.55.1 first answers `device.torture` with
 * the device (127.0.0.1), and a client — with a state directory of its own
 * holding the device's trusted client key — connects by that name once and
 * records the server. Then, every 500 ms, a new client with the same state
 * directory (a restarted program) connects by the name while the DNS
 * server answers, in turn, only a rogue perilink server with an identity of
 * its own (127.0.55.2, same port, `access: "open"`, so any request that
 * reached it would be answered and counted), the rogue first and the
 * device second, and the device first; each round sends `info`.
 *
 * Counters: day1Failures (the first connect, tried again while the device
 * is too busy), rounds, okViaDevice (answered by the device's server id),
 * refusedChanged (PERILINK_SERVER_CHANGED: the answer led only to the
 * rogue), answeredByRogue and rogueChannels (must be 0), otherErrors.
 */
export const poisonedNameAttack: AttackStarter = (target, o) => {
  const stopper = new Stopper(o.deadline);
  const c: Counters = { day1Failures: 0, rounds: 0, okViaDevice: 0, refusedChanged: 0, answeredByRogue: 0, rogueChannels: 0, otherErrors: 0 };
  const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-torture-victim-"));
  let answer: string[] = [target.host];
  const dns = dgram.createSocket("udp4");
  dns.on("message", (msg, from) => {
    let q: packet.Packet;
    try {
      q = packet.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (!question) return;
    const answers = question.type === "A" && question.name.toLowerCase() === NAME ? answer.map((data) => ({ type: "A" as const, name: question.name, ttl: 60, data })) : [];
    dns.send(packet.encode({ type: "response", id: q.id, flags: packet.AUTHORITATIVE_ANSWER, questions: [question], answers }), from.port, from.address);
  });
  let rogue: PerilinkServer | null = null;
  let deviceId = "";
  const victim = () =>
    createClient({ stateDir: dir, lingerMs: 0, logger: silentLogger, resolution: { order: ["dns"], nameServers: [`127.0.55.1:${(dns.address() as { port: number }).port}`], reverse: false } });
  const round = async (): Promise<void> => {
    const client = victim();
    try {
      const link = await client.connect({ host: NAME, port: target.port, app: "torture-victim" });
      const info = JSON.parse((await link.request("info")).toString()) as { serverId: string };
      if (info.serverId === deviceId) c.okViaDevice!++;
      else if (info.serverId === rogue?.serverId) c.answeredByRogue!++;
      else c.otherErrors!++;
    } catch (err) {
      if ((err as { code?: string }).code === "PERILINK_SERVER_CHANGED") c.refusedChanged!++;
      else c.otherErrors!++;
    } finally {
      await client.close();
    }
  };
  const poisonings = [[ROGUE], [ROGUE, target.host], [target.host, ROGUE]];
  let running: Promise<void> = Promise.resolve();
  const ready = (async () => {
    await loadOrCreateClientKey(target.stateDir); // the device's own client key, which it trusts
    copyFileSync(path.join(target.stateDir, CLIENT_KEY_FILE), path.join(dir, CLIENT_KEY_FILE));
    await new Promise<void>((r) => dns.bind(0, "127.0.55.1", () => r()));
    rogue = await startServer({ listen: [`${ROGUE}:${target.port}`], stateDir: mkdtempSync(path.join(os.tmpdir(), "perilink-torture-rogue-")), access: "open", logger: silentLogger, rescanIntervalMs: 0 });
    // Day 1: the name leads to the device, and the client records it (the other attacks may keep the device busy: tried again).
    for (let i = 0; i < 40 && deviceId === "" && !stopper.stopped; i++) {
      const first = victim();
      try {
        const link = await first.connect({ host: NAME, port: target.port, app: "torture-victim" });
        deviceId = (JSON.parse((await link.request("info")).toString()) as { serverId: string }).serverId;
      } catch (err) {
        c.day1Failures!++;
        const e = err as Error & { cause?: Error };
        if (i === 0) process.stderr.write(`poisoned-name: day 1 connect failed (tried again): ${e.message}${e.cause ? ` (cause: ${e.cause.message})` : ""}\n`);
        await stopper.pause(250);
      } finally {
        await first.close();
      }
    }
    if (deviceId === "") return; // never reached the device: no rounds (the counters say so)
    running = (async () => {
      for (let i = 0; i < 10_000 && !stopper.stopped; i++) {
        answer = poisonings[i % poisonings.length]!;
        c.rounds!++;
        await round();
        await stopper.pause(500);
      }
    })();
  })();
  return {
    ready,
    async stop() {
      stopper.stop();
      await running;
      c.rogueChannels = rogue?.status().counters.channelsOpen ?? 0;
      const rogueDir = rogue?.config.stateDir;
      await rogue?.drain(500);
      if (rogueDir) rmSync(rogueDir, { recursive: true, force: true });
      dns.close();
      rmSync(dir, { recursive: true, force: true });
      return c;
    },
  };
};
