import { MAX_RECORD_PLAINTEXT } from "../protocol/record_layer.ts";
import { recordPlaintextFor } from "../protocol/sealed_handshake.ts";
import { detectRuntime } from "./runtime.ts";

/**
 * The largest record plaintext this side seals to a peer that announced
 * `peerFeatures`: the peer's size (§2.5), but records of the default size
 * where the runtime does not seal large ones (RuntimeInfo.sealsLargeRecords).
 */
export function sealPlaintextFor(peerFeatures: number): number {
  return detectRuntime().sealsLargeRecords ? recordPlaintextFor(peerFeatures) : MAX_RECORD_PLAINTEXT;
}
