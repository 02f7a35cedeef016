/**
 * The text of `spoa -h`.
 *
 * @module
 */

/** The usage text of `spoa -h`. */
export const USAGE =
  `Usage: spoa [-h] [-d] [-p port] [-n workers] [-m max-frame-size] [-c capability]...
            [-t delay] [-f frames] [-a address] [--seed N] [--version]
            [--block FILE[=SCORE]]... [--allow FILE[=SCORE]]... [--default-score N|random]
            [--agent MODULE [-- module arguments...]]
       spoa lookup ADDRESS [--block FILE[=SCORE]]... [--allow FILE[=SCORE]]...
            [--default-score N|random]

HAProxy SPOE agent (SPOP 2.0). Without --agent: the IP-reputation service, answering
check-client-ip with sess.<prefix>.ip_score (0..100): from block and allow lists when
given, random otherwise. "spoa lookup" prints why an address gets its score, as JSON.

Options:
  -h, --help                 Show this help and exit.
  -d, --debug                Log every frame and handshake.
  -p, --port <port>          Port to listen on (0 for any free port). Default: 12345.
  -n, --workers <n>          Worker threads; 0 or 1 serves on the main thread. Default: 5.
  -m, --max-frame-size <n>   Largest frame we accept, 256..16777216. Default: 16384.
  -c, --capability <name>    Enable pipelining, async or fragmentation (repeatable, or
                             comma-separated). Pipelining is always enabled.
  -t, --delay <time>         Hold each reply back, e.g. 10ms, 500us, 1s (unit: ms). Default: 0.
  -f, --close-after <n>      Close each connection after n NOTIFY frames. Default: never.
  -a, --address <address>    Address to listen on, or unix:/path for a Unix socket.
                             Default: 0.0.0.0 (all IPv4 interfaces).
      --socket-mode <mode>   The Unix socket's file mode, in octal (e.g. 0660).
      --tls-cert <file>      Serve SPOP over TLS with this certificate (PEM; a chain may follow).
      --tls-key <file>       The certificate's private key (PEM).
      --dispatch <mode>      How connections reach workers: reuseport (each worker listens
                             on the port) or streams (the main thread accepts and hands
                             them over). Default: reuseport.
      --max-connections <n>  Connections served at once; more are closed on arrival.
                             Default: 10000.
      --handler-timeout <t>  How long handlers may take before a NOTIFY is acknowledged
                             without their actions (0: no limit). Default: 50ms.
      --log-format <format>  text (one readable line per event) or json (one object per line).
                             Default: text.
      --seed <n>             Make scores a fixed function of n and the client address
                             (the built-in service's; an agent module takes arguments after --).
      --block <file[=n]>     Give the addresses of this list (addresses, CIDRs or ranges, one
                             a line) the score n; repeatable. Default score: 0.
      --allow <file[=n]>     The same for an allow list, which wins over block lists.
                             Default score: 100.
      --default-score <n>    Score of addresses on no list: 0..100 or random. Default: random
                             without lists, 50 with lists.
      --reload-interval <s>  Reload the lists when a file changed, checked every s seconds
                             (0: on SIGHUP only). Default: 10.
      --max-shrink <pct>     Refuse a reload that would drop more than pct % of a list's
                             entries (the last good lists stay). Default: 50.
      --metrics <addr:port>  Serve Prometheus metrics (GET /metrics), health (GET /health) and
                             list lookups (GET /lookup?ip=ADDR) over HTTP here, e.g.
                             127.0.0.1:9100. Default: off.
      --agent <module>       Run this agent module (a path or URL) instead: its default export
                             is an Agent, an object of handlers, or a function returning one.
      --version              Print the version and exit.

Every flag but -h and --version can also be set in the environment: SPOA_ and the long
name in capitals, "-" as "_" (SPOA_PORT, SPOA_WORKERS, SPOA_MAX_FRAME_SIZE, SPOA_DEBUG=true,
SPOA_CAPABILITY=async,fragmentation, SPOA_BLOCK=drop.txt,tor.txt=20). A flag on the
command line wins.
`;
