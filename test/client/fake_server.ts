import { generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";
import { after } from "node:test";
import { FRAME_HEADER_SIZE, FrameType } from "../../src/protocol/constants.ts";
import { FrameDecoder } from "../../src/protocol/frame_decoder.ts";
import { bytesToUuid, rawPublicKey } from "../../src/protocol/keys.ts";
import { RecordOpener, RecordSealer } from "../../src/protocol/record_layer.ts";
import { answerClientHelloV2, CLIENT_AUTH_SIZE, CLIENT_HELLO_V2_SIZE, OUR_FEATURES, recordPlaintextFor, verifyClientAuth } from "../../src/protocol/sealed_handshake.ts";
import { decodeProbeRequest, encodeProbeResponse, udpSignedMessage } from "../../src/protocol/probe.ts";

/** One frame as bytes: header and payload. */
export function frameBytes(type: number, channel: number, stream: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(FRAME_HEADER_SIZE + payload.byteLength);
  b.writeUInt32BE(payload.byteLength, 0);
  b[4] = type;
  b.writeUInt32BE(channel >>> 0, 8);
  b.writeUInt32BE(stream >>> 0, 12);
  b.set(payload, FRAME_HEADER_SIZE);
  return b;
}

/** A server identity for hand-made servers: an identifier and an Ed25519 key pair. */
export class FakeIdentity {
  readonly serverIdBytes = randomBytes(16);
  readonly serverId = bytesToUuid(this.serverIdBytes);
  readonly #privateKey: KeyObject;
  readonly publicKey: Buffer;

  constructor() {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    this.#privateKey = privateKey;
    this.publicKey = rawPublicKey(publicKey);
  }

  sign(message: Uint8Array): Buffer {
    return sign(null, message, this.#privateKey);
  }

  /** A signed probe response for `nonce`. */
  probeResponse(nonce: Uint8Array, generation = 1): Buffer {
    return encodeProbeResponse({
      serverId: this.serverIdBytes,
      publicKey: this.publicKey,
      signature: this.sign(udpSignedMessage(nonce, this.serverIdBytes, generation)),
      generation,
    });
  }

  /** An accepting server hello for a client hello (protocol v2), and the keys it makes. */
  hello(clientHello: Buffer, maxInflight = 64, features?: number): { reply: Buffer; sealer: RecordSealer; opener: RecordOpener; transcript: Buffer } {
    const answer = answerClientHelloV2(clientHello, {
      serverId: this.serverIdBytes,
      publicKey: this.publicKey,
      maxFrame: 64 * 1024,
      maxChannels: 64,
      maxInflight,
      generation: 1,
      idleTimeoutMs: 60_000,
      ciphers: ["chacha20-poly1305", "aes-256-gcm"],
      sign: (m) => this.sign(m),
      features,
    });
    if (!answer.ok) throw new Error(`fake server cannot answer: ${answer.why}`);
    const { cipher, keys, transcript } = answer.sealed;
    // Records as large as each side announced (§2.5): the client's hello for ours, our features for theirs.
    const sealer = new RecordSealer(cipher, keys.serverToClient, { maxPlaintext: recordPlaintextFor(answer.peerFeatures) });
    return { reply: answer.reply, sealer, opener: new RecordOpener(cipher, keys.clientToServer, { maxPlaintext: recordPlaintextFor(features ?? OUR_FEATURES) }), transcript };
  }
}

/** A connection of the fake server after the client's hello. */
export interface FakeConnection {
  socket: net.Socket;
  /** The client's hello, as it came. */
  clientHello: Buffer;
  /** Frames received from the client, in order. */
  frames: { type: number; channel: number; stream: number; payload: Buffer }[];
  /** The client's proven key, once its first record arrived. */
  clientKey: Buffer | null;
  /** Set once the server answered: the connection is sealed from then on. */
  sealer: RecordSealer | null;
  opener: RecordOpener | null;
  transcript: Buffer | null;
}

export interface FakeServerOptions {
  host?: string;
  /** Answer UDP probes on the same port (default true). */
  udp?: boolean;
  /**
   * Called with the client's hello: write the server's answer (default: a
   * hello) and return true, or return false to let the default run.
   */
  onHello?: (conn: FakeConnection, index: number) => boolean;
  /** Called per frame after the hello; the default answers CHANNEL_OPEN with OK, REQUEST with its payload, PING with PONG. */
  onFrame?: (conn: FakeConnection, type: number, channel: number, stream: number, payload: Buffer) => boolean;
  maxInflight?: number;
  /** Feature bits its hello announces (default: this release's; 0: a first-release server). */
  features?: number;
}

/**
 * A perilink server made by hand from the protocol encoders, on loopback, for
 * tests that need the server to do what the real one never does on cue
 * (hello and GOAWAY in one write, answers held back, replies from elsewhere).
 * Closed after the test file.
 */
export class FakeServer {
  readonly identity = new FakeIdentity();
  readonly connections: FakeConnection[] = [];
  #tcp = net.createServer();
  #udp: dgram.Socket | null = null;
  #options: FakeServerOptions;
  #sockets = new Set<net.Socket>();
  host: string;
  port = 0;

  constructor(options: FakeServerOptions = {}) {
    this.#options = options;
    this.host = options.host ?? "127.0.0.1";
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#tcp.once("error", reject);
      this.#tcp.listen(0, this.host, () => resolve());
    });
    this.port = (this.#tcp.address() as net.AddressInfo).port;
    this.#tcp.on("connection", (s) => this.#onConnection(s));
    if (this.#options.udp !== false) {
      const udp = dgram.createSocket(net.isIPv6(this.host) ? "udp6" : "udp4");
      await new Promise<void>((resolve) => udp.bind(this.port, this.host, () => resolve()));
      udp.on("message", (msg, rinfo) => {
        const nonce = decodeProbeRequest(msg);
        if (nonce) udp.send(this.identity.probeResponse(nonce), rinfo.port, rinfo.address);
      });
      this.#udp = udp;
    }
    after(() => this.close());
    return this;
  }

  /** The signed server hello for `conn` (write it, alone or followed by `sealed(conn, …)` bytes); the connection is sealed from then on. */
  helloFor(conn: FakeConnection): Buffer {
    const h = this.identity.hello(conn.clientHello, this.#options.maxInflight, this.#options.features);
    conn.sealer = h.sealer;
    conn.opener = h.opener;
    conn.transcript = h.transcript;
    return h.reply;
  }

  /** `plaintext` (frames) sealed as the server's next record to `conn`. */
  sealed(conn: FakeConnection, plaintext: Buffer): Buffer {
    return Buffer.concat(conn.sealer!.seal([plaintext], plaintext.length));
  }

  /** Sends one frame to the client of `conn`. */
  send(conn: FakeConnection, type: number, channel: number, stream: number, payload?: Uint8Array): void {
    if (!conn.socket.destroyed) conn.socket.write(this.sealed(conn, frameBytes(type, channel, stream, payload)));
  }

  close(): void {
    for (const s of this.#sockets) s.destroy();
    this.#tcp.close();
    try {
      this.#udp?.close();
    } catch {
      // already closed
    }
    this.#udp = null;
  }

  #onConnection(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => {});
    let got = Buffer.alloc(0);
    let conn: FakeConnection | null = null;
    const decoder = new FrameDecoder(
      {
        onFrame: (type, _flags, channel, stream, payload) => {
          const c = conn!;
          c.frames.push({ type, channel, stream, payload: Buffer.from(payload) });
          if (this.#options.onFrame?.(c, type, channel, stream, payload)) return;
          if (type === FrameType.ChannelOpen) this.send(c, FrameType.ChannelOk, channel, 0);
          else if (type === FrameType.Request) this.send(c, FrameType.Response, channel, stream, payload);
          else if (type === FrameType.Ping) this.send(c, FrameType.Pong, 0, stream, payload);
        },
      },
      64 * 1024,
    );
    let proof = Buffer.alloc(0);
    const opened: Buffer[] = [];
    const fromClient = (c: FakeConnection, chunk: Buffer): void => {
      if (c.opener === null) {
        got = Buffer.concat([got, chunk]); // sent before the server answered: held until it does
        return;
      }
      if (got.length > 0) {
        chunk = Buffer.concat([got, chunk]);
        got = Buffer.alloc(0);
      }
      c.opener.push(chunk, opened);
      for (let plain of opened.splice(0)) {
        if (c.clientKey === null) {
          proof = Buffer.concat([proof, plain]);
          if (proof.length < CLIENT_AUTH_SIZE) continue;
          c.clientKey = verifyClientAuth(proof.subarray(0, CLIENT_AUTH_SIZE), c.transcript!);
          plain = proof.subarray(CLIENT_AUTH_SIZE);
        }
        if (plain.length > 0) decoder.push(plain);
      }
    };
    socket.on("data", (chunk: Buffer) => {
      if (conn) return fromClient(conn, chunk);
      got = Buffer.concat([got, chunk]);
      if (got.length < CLIENT_HELLO_V2_SIZE) return;
      conn = { socket, clientHello: Buffer.from(got.subarray(0, CLIENT_HELLO_V2_SIZE)), frames: [], clientKey: null, sealer: null, opener: null, transcript: null };
      got = Buffer.from(got.subarray(CLIENT_HELLO_V2_SIZE));
      const index = this.connections.length;
      this.connections.push(conn);
      if (!this.#options.onHello?.(conn, index)) socket.write(this.helloFor(conn));
      if (conn.opener !== null && got.length > 0) fromClient(conn, Buffer.alloc(0));
    });
  }
}
