package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// cmdForward is `plivo-dlr forward status|retry NAME|replay NAME --since
// CURSOR`, through a running server's API like backup (bbolt locks the
// database to the server).
func cmdForward(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return usageError{errors.New("forward: want status, retry NAME or replay NAME --since CURSOR")}
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("forward "+sub, stderr)
	af := addAPIFlags(fs)
	var since *string
	if sub == "replay" {
		since = fs.String("since", "", "event cursor: deliver again every event after it")
	}
	// NAME may come before or after the flags.
	name := ""
	if sub != "status" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return usageError{err}
	}
	if name == "" && sub != "status" && fs.NArg() > 0 {
		name = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return usageError{err}
		}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("forward %s: unexpected argument %q", sub, fs.Arg(0))}
	}
	switch sub {
	case "status":
	case "retry", "replay":
		if name == "" {
			return usageError{fmt.Errorf("forward %s: name the sink (see plivo-dlr forward status)", sub)}
		}
		if sub == "replay" && *since == "" {
			return usageError{errors.New("forward replay: --since CURSOR is required")}
		}
	default:
		return usageError{fmt.Errorf("forward: unknown subcommand %q (want status, retry or replay)", sub)}
	}
	client, err := apiClientFromFlags(af, getenv)
	if err != nil {
		return err
	}
	switch sub {
	case "status":
		sinks, err := client.ForwardStatus(ctx)
		if err != nil {
			return fmt.Errorf("forward status: %w", err)
		}
		if len(sinks) == 0 {
			fmt.Fprintln(stdout, "no forwarding sinks configured")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKIND\tDELIVERED\tLAG\tOLDEST PENDING\tDEAD\tLAST SUCCESS\tLAST ERROR")
		for _, s := range sinks {
			last := "never"
			if s.LastSuccess != nil {
				last = s.LastSuccess.Format(time.RFC3339)
			}
			lastErr := s.LastError
			if !s.Failing {
				lastErr = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%s\t%s\n", s.Name, s.Kind, s.DeliveredCursor, s.Lag,
				(time.Duration(s.OldestPendingSeconds) * time.Second).String(), s.Dead, last, lastErr)
		}
		return tw.Flush()
	case "retry":
		msg, err := client.ForwardRetry(ctx, name)
		if err != nil {
			return fmt.Errorf("forward retry: %w", err)
		}
		fmt.Fprintln(stdout, msg)
	case "replay":
		msg, err := client.ForwardReplay(ctx, name, *since)
		if err != nil {
			return fmt.Errorf("forward replay: %w", err)
		}
		fmt.Fprintln(stdout, msg)
	}
	return nil
}
