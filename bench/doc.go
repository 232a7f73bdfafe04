// Package bench is the load benchmark behind `sessiongate bench`: it starts real
// fasthttp members on loopback, a session population in a mix of key formats, and
// measures in one run the direct path to a member, the gateway (in-process or as a
// child process, on fasthttp's data path, the epoll one or both: Options.Dataplane)
// and, when installed, HAProxy and NGINX configured for the same stickiness. Every response is checked: a session answered by a member other than
// the one it is bound to is a sticky violation.
//
// It owns load generation, latency histograms and the report. It must not reach into
// the gateway's internals: it builds a config.Config, or a configuration file for a
// child process, like any user would. Run is the entry point; the command only parses
// flags and prints the Report.
//
// Memory is the memory mode (`sessiongate bench -memory`): it fills a sessioncache.Cache
// directly, with keys hashed by router.HashKey as the gateway hashes them, and reports
// heap and RSS per learned session. It imports those two packages for that alone.
package bench
