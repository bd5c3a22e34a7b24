// The streams benchmark's app: counts a streamed request body as it is read
// and answers with the count. "slow" on the channel's app name reads one
// 64 KiB chunk per 10 ms (100× slower than the fast readers on loopback).
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export default {
  streams: true,
  async request(_payload, ctx) {
    let n = 0;
    const slow = ctx.app === "slow";
    for await (const chunk of ctx.body) {
      n += chunk.length;
      if (slow) await sleep(10);
    }
    return String(n);
  },
};
