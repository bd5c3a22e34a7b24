// The streams benchmark's app: counts a streamed request body as it is read
// and answers with the count. "slow" on the channel's app name reads at
// 256 KB/s (a pause of 1 ms per 256 bytes read): about 100× slower than the
// fast readers' ~23 MB/s here.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export default {
  streams: true,
  async request(_payload, ctx) {
    let n = 0;
    const slow = ctx.app === "slow";
    for await (const chunk of ctx.body) {
      n += chunk.length;
      if (slow) await sleep(Math.ceil(chunk.length / 256));
    }
    return String(n);
  },
};
