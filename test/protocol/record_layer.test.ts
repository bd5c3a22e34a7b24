import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import fc from "fast-check";
import { RecordError } from "../../src/errors.ts";
import {
  LARGE_RECORD_PLAINTEXT,
  MAX_RECORD_PLAINTEXT,
  RECORD_HEADER_SIZE,
  RecordOpener,
  RecordSealer,
  supportedCiphers,
  TAG_SIZE,
  type CipherName,
} from "../../src/protocol/record_layer.ts";

const CIPHERS: CipherName[] = ["chacha20-poly1305", "aes-256-gcm"];

/** Splits `b` at the given cut points (sorted, deduplicated, within bounds). */
function splitAt(b: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(b.subarray(prev, p));
    prev = p;
  }
  out.push(b.subarray(prev));
  return out;
}

function openAll(opener: RecordOpener, chunks: Buffer[]): Buffer {
  const out: Buffer[] = [];
  for (const c of chunks) opener.push(c, out);
  return Buffer.concat(out);
}

function pushed(opener: RecordOpener, chunk: Buffer): Buffer[] {
  const out: Buffer[] = [];
  opener.push(chunk, out);
  return out;
}

test("both ciphers are available here, ChaCha20-Poly1305 first (no AES instructions on a Raspberry Pi)", () => {
  assert.deepEqual(supportedCiphers(), CIPHERS);
});

for (const cipher of CIPHERS) {
  test(`${cipher}: whatever the batches and however the bytes are split, the receiver gets exactly the plaintext, record by whole record`, () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (batches, cuts) => {
          const key = randomBytes(32);
          const sealer = new RecordSealer(cipher, key, { rekeyEvery: 3 });
          const opener = new RecordOpener(cipher, key, { rekeyEvery: 3 });
          const wire = Buffer.concat(batches.flatMap((pieces) => sealer.seal(pieces, pieces.reduce((n, p) => n + p.length, 0))));
          const plain = Buffer.concat(batches.flat());
          assert.deepEqual(openAll(opener, splitAt(wire, cuts)), plain);
          assert.equal(opener.buffered, 0);
          opener.end();
          assert.equal(opener.records, sealer.records);
        },
      ),
      { numRuns: 150 },
    );
  });

  test(`${cipher}: one bit flipped anywhere in the stream ends it with PERILINK_RECORD, and nothing of that record or after comes out`, () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 600 }), { minLength: 1, maxLength: 5 }), fc.nat(), fc.integer({ min: 0, max: 7 }), (batches, at, bit) => {
        const key = randomBytes(32);
        const sealer = new RecordSealer(cipher, key);
        const records = batches.map((b) => Buffer.concat(sealer.seal([b], b.length)));
        const wire = Buffer.concat(records);
        const pos = at % wire.length;
        wire[pos]! ^= 1 << bit;
        // Which record holds the flipped bit: everything before it is delivered, nothing from it on.
        let start = 0;
        let hit = 0;
        while (start + records[hit]!.length <= pos) start += records[hit++]!.length;
        const opener = new RecordOpener(cipher, key);
        const got: Buffer[] = [];
        let failure: unknown = null;
        try {
          opener.push(wire, got);
          opener.end();
        } catch (err) {
          failure = err;
        }
        assert.ok(failure instanceof RecordError, `flipped byte ${pos} (record ${hit}) was not caught`);
        assert.equal((failure as RecordError).code, "PERILINK_RECORD");
        assert.deepEqual(Buffer.concat(got), Buffer.concat(batches.slice(0, hit)));
      }),
      { numRuns: 300 },
    );
  });
}

test("a record replayed, two records swapped, or one dropped fails authentication", () => {
  const key = randomBytes(32);
  const sealer = new RecordSealer("chacha20-poly1305", key);
  const [a, b, c] = [sealer.seal([Buffer.from("first")], 5)[0]!, sealer.seal([Buffer.from("second")], 6)[0]!, sealer.seal([Buffer.from("third")], 5)[0]!];
  const cases: [string, Buffer[]][] = [
    ["replayed", [a, a]],
    ["swapped", [a, c, b]],
    ["dropped", [a, c]],
  ];
  for (const [what, stream] of cases) {
    const opener = new RecordOpener("chacha20-poly1305", key);
    const out: string[] = [];
    assert.throws(
      () => {
        for (const r of stream) for (const p of pushed(opener, r)) out.push(p.toString());
      },
      (err: unknown) => err instanceof RecordError && /failed authentication/.test(err.message),
      what,
    );
    assert.deepEqual(out, ["first"], `${what}: only the record before the fault came out`);
  }
});

test("a record from another session (another key) or sealed with the other cipher does not open", () => {
  const sealed = new RecordSealer("chacha20-poly1305", randomBytes(32)).seal([Buffer.from("hello")], 5)[0]!;
  assert.throws(() => pushed(new RecordOpener("chacha20-poly1305", randomBytes(32)), sealed), RecordError);
  const key = randomBytes(32);
  const gcm = new RecordSealer("aes-256-gcm", key).seal([Buffer.from("hello")], 5)[0]!;
  assert.throws(() => pushed(new RecordOpener("chacha20-poly1305", key), gcm), RecordError);
});

test("a connection cut inside a record is reported by end(), and the partial record is never delivered", () => {
  const key = randomBytes(32);
  const r = new RecordSealer("aes-256-gcm", key).seal([Buffer.alloc(100, 7)], 100)[0]!;
  const opener = new RecordOpener("aes-256-gcm", key);
  assert.deepEqual(pushed(opener, r.subarray(0, r.length - 1)), []);
  assert.equal(opener.buffered, r.length - 1);
  assert.throws(() => opener.end(), (err: unknown) => err instanceof RecordError && /ended 119 bytes into it/.test(err.message));
});

test("a length field out of bounds is refused from the header alone, before any of the record is held", () => {
  const key = randomBytes(32);
  const huge = Buffer.alloc(RECORD_HEADER_SIZE);
  huge.writeUInt32BE(MAX_RECORD_PLAINTEXT + TAG_SIZE + 1, 0);
  assert.throws(() => pushed(new RecordOpener("chacha20-poly1305", key), huge), (err: unknown) => err instanceof RecordError && /outside/.test(err.message));
  const short = Buffer.alloc(RECORD_HEADER_SIZE);
  short.writeUInt32BE(TAG_SIZE - 1, 0);
  assert.throws(() => pushed(new RecordOpener("chacha20-poly1305", key), short), RecordError);
  // A header split across reads is checked as soon as its four bytes are there.
  const opener = new RecordOpener("chacha20-poly1305", key);
  assert.deepEqual(pushed(opener, huge.subarray(0, 2)), []);
  assert.throws(() => pushed(opener, huge.subarray(2)), RecordError);
});

test("a batch larger than one record is sealed as several, none over MAX_RECORD_PLAINTEXT; a small batch is one record", () => {
  const key = randomBytes(32);
  const sealer = new RecordSealer("chacha20-poly1305", key);
  const big = randomBytes(2 * MAX_RECORD_PLAINTEXT + 5);
  const records = sealer.seal([big.subarray(0, 1000), big.subarray(1000)], big.length);
  assert.deepEqual(records.map((r) => r.length - RECORD_HEADER_SIZE - TAG_SIZE), [MAX_RECORD_PLAINTEXT, MAX_RECORD_PLAINTEXT, 5]);
  assert.deepEqual(openAll(new RecordOpener("chacha20-poly1305", key), records), big);
  assert.equal(sealer.seal([Buffer.from("a"), Buffer.from("bc")], 3).length, 1);
  assert.deepEqual(sealer.seal([], 0), []);
});

test("every rekeyEvery records both sides move to a new key: the same plaintext seals differently after the boundary, and both sides agree", () => {
  const key = randomBytes(32);
  const rekeyed = new RecordSealer("chacha20-poly1305", key, { rekeyEvery: 2 });
  const opener = new RecordOpener("chacha20-poly1305", key, { rekeyEvery: 2 });
  const plain = Buffer.from("same bytes");
  const wire = Array.from({ length: 5 }, () => rekeyed.seal([plain], plain.length)[0]!);
  assert.deepEqual(openAll(opener, wire).toString(), plain.toString().repeat(5));
  // Record 2 under the rotated key differs from record 2 under the first key (nonce 2 in both).
  const plainKey = new RecordSealer("chacha20-poly1305", key, { rekeyEvery: 1000 });
  const unrotated = Array.from({ length: 3 }, () => plainKey.seal([plain], plain.length)[0]!);
  assert.deepEqual(wire[1], unrotated[1], "before the boundary both seal alike");
  assert.notDeepEqual(wire[2], unrotated[2], "after it the key has changed");
  // An opener that does not rotate cannot follow.
  assert.throws(() => openAll(new RecordOpener("chacha20-poly1305", key, { rekeyEvery: 1000 }), wire), RecordError);
});

test("a record trickled one byte per read is held in one buffer of its size and opens whole at its last byte", () => {
  const key = randomBytes(32);
  const plain = randomBytes(5000);
  const record = new RecordSealer("chacha20-poly1305", key).seal([plain], plain.length)[0]!;
  const opener = new RecordOpener("chacha20-poly1305", key);
  const out: Buffer[] = [];
  for (let i = 0; i < record.length - 1; i++) {
    opener.push(record.subarray(i, i + 1), out);
    assert.equal(out.length, 0);
    assert.equal(opener.buffered, i + 1);
    assert.equal(opener.remaining, i + 1 < RECORD_HEADER_SIZE ? RECORD_HEADER_SIZE - i - 1 : record.length - i - 1);
  }
  opener.push(record.subarray(record.length - 1), out);
  assert.deepEqual(Buffer.concat(out), plain);
  assert.equal(opener.buffered, 0);
});

test("with large records, a direction's first record stays within MAX_RECORD_PLAINTEXT and later ones fill LARGE_RECORD_PLAINTEXT", () => {
  const key = randomBytes(32);
  const sealer = new RecordSealer("aes-256-gcm", key, { maxPlaintext: LARGE_RECORD_PLAINTEXT });
  const big = randomBytes(3 * LARGE_RECORD_PLAINTEXT);
  const records = sealer.seal([big], big.length);
  const sizes = records.map((r) => r.length - RECORD_HEADER_SIZE - TAG_SIZE);
  assert.deepEqual(sizes, [MAX_RECORD_PLAINTEXT, LARGE_RECORD_PLAINTEXT, LARGE_RECORD_PLAINTEXT, 3 * LARGE_RECORD_PLAINTEXT - MAX_RECORD_PLAINTEXT - 2 * LARGE_RECORD_PLAINTEXT]);
  assert.deepEqual(openAll(new RecordOpener("aes-256-gcm", key, { maxPlaintext: LARGE_RECORD_PLAINTEXT }), records), big);
});

test("an opener that announced no large records refuses one from its header; one that did still refuses a first record past MAX_RECORD_PLAINTEXT", () => {
  const key = randomBytes(32);
  const sealer = new RecordSealer("chacha20-poly1305", key, { maxPlaintext: LARGE_RECORD_PLAINTEXT });
  const earlier = sealer.seal([randomBytes(MAX_RECORD_PLAINTEXT + 100)], MAX_RECORD_PLAINTEXT + 100); // records 0 and 1
  const large = sealer.seal([randomBytes(LARGE_RECORD_PLAINTEXT)], LARGE_RECORD_PLAINTEXT)[0]!; // record 2
  const small = new RecordOpener("chacha20-poly1305", key);
  for (const r of earlier) small.push(r, []);
  assert.throws(() => small.push(large.subarray(0, RECORD_HEADER_SIZE), []), (err: unknown) => err instanceof RecordError && /record 2: its length .* outside 16\.\.16400/.test(err.message));
  const head = Buffer.alloc(RECORD_HEADER_SIZE);
  head.writeUInt32BE(MAX_RECORD_PLAINTEXT + 1 + TAG_SIZE);
  assert.throws(() => new RecordOpener("chacha20-poly1305", key, { maxPlaintext: LARGE_RECORD_PLAINTEXT }).push(head, []), (err: unknown) => err instanceof RecordError && /record 0: its length/.test(err.message));
});

for (const cipher of CIPHERS) {
  test(`${cipher}: large records split across reads, many in a row and two sessions interleaved, open to exactly their own plaintext`, () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (batches, cuts) => {
        // Two sessions' records opened turn about, so a record buffer reused between them would show.
        const wires = [0, 1].map(() => {
          const key = randomBytes(32);
          const sealer = new RecordSealer(cipher, key, { maxPlaintext: LARGE_RECORD_PLAINTEXT });
          const plain = batches.map((n) => randomBytes(n));
          const wire = Buffer.concat(plain.flatMap((p) => sealer.seal([p], p.length)));
          return { opener: new RecordOpener(cipher, key, { maxPlaintext: LARGE_RECORD_PLAINTEXT }), plain: Buffer.concat(plain), chunks: splitAt(wire, cuts), out: [] as Buffer[] };
        });
        const most = Math.max(...wires.map((w) => w.chunks.length));
        for (let i = 0; i < most; i++) for (const w of wires) if (i < w.chunks.length) w.opener.push(w.chunks[i]!, w.out);
        for (const w of wires) assert.ok(Buffer.concat(w.out).equals(w.plain));
      }),
      { numRuns: 40 },
    );
  });
}

test("large records announced by their headers and trickled take at most the 4 spare buffers, then 16 KiB or four times what arrived each, and open whole", () => {
  const key = randomBytes(32);
  // Four sessions stalled inside large records hold the process's 4 spares.
  const stalled = Array.from({ length: 4 }, () => {
    const k = randomBytes(32);
    const s = new RecordSealer("aes-256-gcm", k, { maxPlaintext: LARGE_RECORD_PLAINTEXT });
    const o = new RecordOpener("aes-256-gcm", k, { maxPlaintext: LARGE_RECORD_PLAINTEXT });
    o.push(s.seal([Buffer.from("first")], 5)[0]!, []);
    o.push(s.seal([randomBytes(LARGE_RECORD_PLAINTEXT)], LARGE_RECORD_PLAINTEXT)[0]!.subarray(0, 10), []);
    return o;
  });
  assert.ok(stalled.every((o) => o.allocated <= RECORD_HEADER_SIZE + LARGE_RECORD_PLAINTEXT + TAG_SIZE));
  const sealer = new RecordSealer("aes-256-gcm", key, { maxPlaintext: LARGE_RECORD_PLAINTEXT });
  const opener = new RecordOpener("aes-256-gcm", key, { maxPlaintext: LARGE_RECORD_PLAINTEXT });
  opener.push(sealer.seal([Buffer.from("first")], 5)[0]!, []);
  const plain = randomBytes(LARGE_RECORD_PLAINTEXT);
  const record = sealer.seal([plain], plain.length)[0]!;
  const out: Buffer[] = [];
  opener.push(record.subarray(0, RECORD_HEADER_SIZE + 1), out);
  assert.equal(opener.allocated, RECORD_HEADER_SIZE + MAX_RECORD_PLAINTEXT + TAG_SIZE, "a header and one byte: a small record's room, not 68 KiB");
  for (let at = RECORD_HEADER_SIZE + 1; at < record.length; at += 997) {
    opener.push(record.subarray(at, Math.min(record.length, at + 997)), out);
    if (out.length === 0) assert.ok(opener.allocated <= Math.max(RECORD_HEADER_SIZE + MAX_RECORD_PLAINTEXT + TAG_SIZE, 4 * opener.buffered), `${opener.allocated} allocated for ${opener.buffered} arrived`);
  }
  assert.deepEqual(Buffer.concat(out), plain);
  assert.equal(opener.allocated, 0);
});
