package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/sessiongate/sessiongate/config"
)

// Flags are the command-line settings. Each one overrides the config file's field of
// the same meaning, and only when given.
type Flags struct {
	Config string
	// Watch reloads the configuration when the file changes (checked every 2s).
	Watch bool

	listen, admin, logLevel, logFormat   string
	shutdownTimeout                      time.Duration
	maxSessions, maxHeaderBytes          int
	maxConns, clientMaxConns             int
	maxBodyBytes                         int64
	reusePort, accessLog                 bool
	readTimeout, writeTimeout            time.Duration
	idleTimeout, dialTimeout, respTimout time.Duration

	fs *flag.FlagSet
}

// Register defines the flags on fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	f.fs = fs
	d := config.Default()
	fs.StringVar(&f.Config, "config", "", "path of the YAML configuration file")
	fs.BoolVar(&f.Watch, "watch", false, "reload the configuration when the file changes (also: SIGHUP, POST /api/reload)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", d.ShutdownTimeout, "how long a graceful shutdown waits for in-flight requests (shutdown_timeout)")
	fs.StringVar(&f.listen, "listen", d.Listen, "client listen address host:port (listen, or the address of the first of listeners)")
	fs.StringVar(&f.admin, "admin", d.Admin.Listen, "admin listen address host:port, \"\" to disable (admin.listen)")
	fs.StringVar(&f.logLevel, "log-level", d.Log.Level, "debug, info, warn or error (log.level)")
	fs.StringVar(&f.logFormat, "log-format", d.Log.Format, "json or console (log.format)")
	fs.BoolVar(&f.accessLog, "access-log", d.Log.Access, "write the access log (log.access)")
	fs.IntVar(&f.maxSessions, "max-sessions", d.Session.Learned.MaxSessions, "most learned sessions kept (session.learned.max_sessions)")
	fs.BoolVar(&f.reusePort, "reuseport", d.ReusePort, "one SO_REUSEPORT listener per CPU (reuseport)")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", d.Server.MaxHeaderBytes, "largest request head; larger gets 431 (server.max_header_bytes)")
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", d.Server.MaxBodyBytes, "largest request body; larger gets 413 (server.max_body_bytes)")
	fs.IntVar(&f.maxConns, "max-conns", d.Server.MaxConns, "most concurrent client connections, 0 = fasthttp default (server.max_conns)")
	fs.DurationVar(&f.readTimeout, "read-timeout", d.Server.ReadTimeout, "client request read timeout (server.read_timeout)")
	fs.DurationVar(&f.writeTimeout, "write-timeout", d.Server.WriteTimeout, "client response write timeout (server.write_timeout)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", d.Server.IdleTimeout, "client keep-alive idle timeout (server.idle_timeout)")
	fs.DurationVar(&f.dialTimeout, "dial-timeout", d.Client.DialTimeout, "member connect timeout (client.dial_timeout)")
	fs.DurationVar(&f.respTimout, "response-timeout", d.Client.ReadTimeout, "member response timeout, then 504 (client.read_timeout)")
	fs.IntVar(&f.clientMaxConns, "member-max-conns", d.Client.MaxConns, "most connections to one member, 0 = unlimited (client.max_conns)")
}

// Load reads the config file (required), applies the flags that were given, and
// validates the result; errors start with the file's path.
func (f *Flags) Load() (*config.Config, error) {
	if f.Config == "" {
		return nil, fmt.Errorf("sessiongate: -config: a configuration file is required (see examples/fbdev.yaml)")
	}
	cfg, err := config.LoadOverride(f.Config, f.Apply)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Config, err)
	}
	return cfg, nil
}

// Apply copies the flags that were given on the command line into cfg.
func (f *Flags) Apply(cfg *config.Config) {
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "listen":
			if len(cfg.Listeners) > 0 { // the first of the file's listeners moves
				cfg.Listeners = append([]config.Listener(nil), cfg.Listeners...)
				cfg.Listeners[0].Address = f.listen
			} else {
				cfg.Listen = f.listen
			}
		case "shutdown-timeout":
			cfg.ShutdownTimeout = f.shutdownTimeout
		case "admin":
			cfg.Admin.Listen = f.admin
		case "log-level":
			cfg.Log.Level = f.logLevel
		case "log-format":
			cfg.Log.Format = f.logFormat
		case "access-log":
			cfg.Log.Access = f.accessLog
		case "max-sessions":
			cfg.Session.Learned.MaxSessions = f.maxSessions
		case "reuseport":
			cfg.ReusePort = f.reusePort
		case "max-header-bytes":
			cfg.Server.MaxHeaderBytes = f.maxHeaderBytes
		case "max-body-bytes":
			cfg.Server.MaxBodyBytes = f.maxBodyBytes
		case "max-conns":
			cfg.Server.MaxConns = f.maxConns
		case "read-timeout":
			cfg.Server.ReadTimeout = f.readTimeout
		case "write-timeout":
			cfg.Server.WriteTimeout = f.writeTimeout
		case "idle-timeout":
			cfg.Server.IdleTimeout = f.idleTimeout
		case "dial-timeout":
			cfg.Client.DialTimeout = f.dialTimeout
		case "response-timeout":
			cfg.Client.ReadTimeout = f.respTimout
		case "member-max-conns":
			cfg.Client.MaxConns = f.clientMaxConns
		}
	})
}
