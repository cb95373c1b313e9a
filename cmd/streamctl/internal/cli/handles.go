package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	streammgr "github.com/streammgr/streammgr/clients/go"
)

func (a *app) lsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List your streams and servers",
		Long:  "ls lists the streams and the servers you may use in the daemon, as two tables.",
		Args:  exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd.Context(), func(c *streammgr.Client) error {
				streams, err := c.Streams(cmd.Context())
				if err != nil {
					return err
				}
				servers, err := c.Servers(cmd.Context())
				if err != nil {
					return err
				}
				printStreams(a.stdout, streams)
				fmt.Fprintln(a.stdout)
				printServers(a.stdout, servers)
				return nil
			})
		}),
	}
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// orDash shows an empty value as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age shows a duration the way people read it.
func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func printStreams(w io.Writer, streams []streammgr.StreamInfo) {
	if len(streams) == 0 {
		fmt.Fprintln(w, "no streams")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "STREAM\tKIND\tSTATE\tPEER\tLOCAL\tIN\tOUT\tAGE\tNOTES")
	for _, s := range streams {
		var notes []string
		if s.Attached {
			notes = append(notes, "attached")
		}
		if s.RelayPeer != "" {
			notes = append(notes, "relay "+s.RelayPeer)
		}
		if s.ServerID != "" {
			notes = append(notes, "from "+s.ServerID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.ID, s.Kind, s.State, orDash(s.Peer), orDash(s.Local),
			s.BytesIn, s.BytesOut, age(s.Age), orDash(strings.Join(notes, ", ")))
	}
	tw.Flush()
}

func printServers(w io.Writer, servers []streammgr.ServerInfo) {
	if len(servers) == 0 {
		fmt.Fprintln(w, "no servers")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "SERVER\tSTATE\tSOCKETS\tACCEPTED\tQUEUED\tREJECTED\tAGE")
	for _, s := range servers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.ID, s.State, orDash(strings.Join(s.Sockets, ",")),
			s.Accepted, s.Queued, s.Rejected, age(s.Age))
	}
	tw.Flush()
}

func (a *app) inspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect ID",
		Short: "Show every field of one stream or server",
		Long:  "inspect shows every field the daemon reports for one stream (s-...) or server (srv-...).",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(c *streammgr.Client) error {
				id := args[0]
				tw := table(a.stdout)
				defer tw.Flush()
				if streammgr.IsServerID(id) {
					s, err := c.Server(cmd.Context(), id)
					if err != nil {
						return err
					}
					fields(tw, [][2]string{
						{"server", s.ID}, {"state", s.State}, {"sockets", strings.Join(s.Sockets, ", ")},
						{"accepted", itoa(s.Accepted)}, {"queued", itoa(s.Queued)}, {"rejected", itoa(s.Rejected)},
						{"serve calls", itoa(s.ServeCalls)}, {"bytes in", itoa(s.BytesIn)}, {"bytes out", itoa(s.BytesOut)},
						{"age", age(s.Age)}, {"owner", s.Owner}, {"shared with", strings.Join(s.SharedWith, ", ")},
					})
					return nil
				}
				s, err := c.Stream(cmd.Context(), id)
				if err != nil {
					return err
				}
				fields(tw, [][2]string{
					{"stream", s.ID}, {"kind", s.Kind}, {"state", s.State}, {"peer", s.Peer}, {"local", s.Local},
					{"bytes in", itoa(s.BytesIn)}, {"bytes out", itoa(s.BytesOut)}, {"buffered", itoa(s.Buffered)},
					{"retained", itoa(s.Retained)}, {"earliest offset", itoa(s.EarliestOffset)},
					{"write buffered", itoa(s.WriteBuffered)}, {"calls in progress", itoa(s.CallsInProgress)},
					{"age", age(s.Age)}, {"server", s.ServerID}, {"attached", strconv.FormatBool(s.Attached)},
					{"relay peer", s.RelayPeer}, {"owner", s.Owner}, {"shared with", strings.Join(s.SharedWith, ", ")},
				})
				return nil
			})
		}),
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func fields(tw *tabwriter.Writer, kv [][2]string) {
	for _, f := range kv {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], orDash(f[1]))
	}
}

func (a *app) closeCmd() *cobra.Command {
	var closeClients, abortClients bool
	cmd := &cobra.Command{
		Use:   "close ID",
		Short: "Close a stream (flushing it) or a server",
		Long: `close closes a stream as StreamWriter.close() does: the daemon sends what it
still holds, then closes the socket. Given a server id (srv-...), it stops
the server listening and releases it; --close-clients or --abort-clients also
close or abort the streams it accepted.`,
		Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if !streammgr.IsServerID(id) && (closeClients || abortClients) {
				return usagef("--close-clients and --abort-clients are for servers (srv-...), not %s", id)
			}
			if closeClients && abortClients {
				return usagef("give --close-clients or --abort-clients, not both")
			}
			return a.withClient(cmd.Context(), func(c *streammgr.Client) error {
				var err error
				if streammgr.IsServerID(id) {
					clients := streammgr.KeepClients
					switch {
					case closeClients:
						clients = streammgr.CloseClients
					case abortClients:
						clients = streammgr.AbortClients
					}
					err = c.CloseServer(cmd.Context(), id, clients)
				} else {
					err = c.CloseStream(cmd.Context(), id)
				}
				if err == nil {
					fmt.Fprintf(a.stdout, "closed %s\n", id)
				}
				return err
			})
		}),
	}
	cmd.Flags().BoolVar(&closeClients, "close-clients", false, "servers: also close the streams the server accepted")
	cmd.Flags().BoolVar(&abortClients, "abort-clients", false, "servers: also abort the streams the server accepted")
	return cmd
}

func (a *app) abortCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "abort ID",
		Short: "Abort a stream, discarding what it has not sent",
		Long:  "abort closes a stream at once, discarding the bytes the daemon has not sent yet.",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if streammgr.IsServerID(id) {
				return usagef("abort takes a stream id; close a server with: streamctl close --abort-clients %s", id)
			}
			return a.withClient(cmd.Context(), func(c *streammgr.Client) error {
				err := c.AbortStream(cmd.Context(), id)
				if err == nil {
					fmt.Fprintf(a.stdout, "aborted %s\n", id)
				}
				return err
			})
		}),
	}
}

func (a *app) healthCmd() *cobra.Command {
	var service string
	c := &cobra.Command{
		Use:   "health",
		Short: "Show whether the daemon serves",
		Long: `health asks the daemon's grpc.health.v1 service how the daemon and its
memory budget are, and exits 1 when either is not SERVING. --service daemon
checks the daemon alone (a liveness probe: a full memory budget is not a
reason to restart it); --service budget the memory budget alone.`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			switch service {
			case "all", "daemon", "budget":
			default:
				return usagef("--service %q: want all, daemon or budget", service)
			}
			return a.withClient(cmd.Context(), func(c *streammgr.Client) error {
				h, err := c.Health(cmd.Context())
				if err != nil {
					return err
				}
				tw := table(a.stdout)
				fields(tw, [][2]string{{"address", c.Addr()}, {"daemon", h.Status}, {"memory budget", orDash(h.Budget)}})
				tw.Flush()
				daemonOK := h.Status == "SERVING"
				budgetOK := h.Budget == "" || h.Budget == "SERVING"
				switch {
				case service == "daemon" && !daemonOK, service == "budget" && !budgetOK, service == "all" && !h.Serving():
					return fmt.Errorf("the daemon is not serving (daemon %s, memory budget %s)", h.Status, orDash(h.Budget))
				}
				return nil
			})
		}),
	}
	c.Flags().StringVar(&service, "service", "all", "what to check: all, daemon or budget")
	return c
}
