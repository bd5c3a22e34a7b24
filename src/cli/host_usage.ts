/**
 * The host commands' lines of `perilink help` (main.ts), and the note a
 * build without them prints in their place. A device build
 * (`"role": "device"`) has host_commands_off.ts in this file's place, so
 * its help, its man page and its bash completion list only what it runs.
 */
export const HOST_USAGE = `  perilink call   HOST:PORT [HOST:PORT]... [--app NAME] [--data TEXT] [--json | --raw] [--timeout MS]
                  [--data-file FILE|-] [--output FILE|-]  (one HOST:PORT: a streamed request and response)
                  [--name-server ADDR[:PORT]]... [--resolve hosts,dns,mdns,llmnr,netbios] [--interface IF]...
                  [--prefer bandwidth=1,hops=1,mtu=1,rtt=1] [--state-dir DIR] [--expect SHA256:KEY] [--trust-new]
                  (HOST: an address or a name)
  perilink pair   HOST:PORT CODE [--json] [--timeout MS] [--state-dir DIR]   (host)
  perilink key    [--state-dir DIR] [--json]  (this host's client key, for "perilink trust add" on a device)
  perilink browse [--json] [--timeout MS] [--interface IF]...  (the devices on the LAN: mDNS, then a signed probe of each)
  perilink forget NAME|ADDRESS|SERVER-ID|SHA256:KEY [--state-dir DIR] [--json]  (a server replaced on purpose)
  perilink agent  [--socket PATH] [--state-dir DIR] [--log-level LEVEL]  (host: one session table for this user's apps)
  perilink agent upgrade [--socket PATH] [--json]  (replace the running agent, its socket kept open)
  perilink agent metrics [--socket PATH]  (the agent's counters, OpenMetrics text)
  perilink sessions [--socket PATH] [--json] [--watch] [--interval MS] [--count N]  (the agent's table)
`;

/** `perilink id`'s TCP option: the handshake's client half is a host's. */
export const ID_TCP = "[--tcp] ";

/** Said after the usage lines by a build without the host commands; nothing here. */
export const BUILD_NOTE = "";
