package tunnel

import "log/slog"

// The keys of the log lines (docs/logging.md, "Keys"): every line about
// a tunnel, a forward or a connection uses these for what they name, in
// both --log-format text and json.
//
//	tunnel   a client's tunnel: ClientConfig.Name (pinhole up's
//	         [tunnel.NAME]), else the server as given (ClientConfig.Addr)
//	forward  a forward as written on the command line: -L 8080:db:5432
//	peer     the far end's address of a connection (on a server: the
//	         SSH client's; on a forward: whoever connected to it)
//	laddr    an address listened on, or the local end of a connection
//	raddr    the address dialed: a forward's target
//	bytes    bytes carried, both ways together
//	reason   why, as one word from a fixed list

// tunnelLogger is log with the tunnel's key: its name, and the server's
// address as given when that is not the name.
func tunnelLogger(log *slog.Logger, cfg ClientConfig) *slog.Logger {
	if cfg.Name == "" || cfg.Name == cfg.Addr {
		return log.With("tunnel", cfg.Addr)
	}
	return log.With("tunnel", cfg.Name, "server", cfg.Addr)
}
