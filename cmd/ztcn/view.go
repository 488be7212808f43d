package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/runtime/local"
)

// renderRun prints a 'ztcn up' run: nodes, pods, policy, recent verdicts.
func renderRun(w io.Writer, rs *local.RunStatus, now time.Time) {
	state := "ready"
	switch {
	case rs.Error != "":
		state = "FAILED: " + rs.Error
	case !rs.Ready:
		state = "starting"
	}
	fmt.Fprintf(w, "run %s  %s  (%s, up %s)\n", rs.Run, state, rs.Dir, now.Sub(rs.StartedAt).Round(time.Second))
	fmt.Fprintf(w, "policy   version %d, %d rules, mode %s, loaded %s\n", rs.Policy.Version, rs.Policy.Rules, rs.Mode, rs.Policy.LoadedAt.Format("15:04:05"))
	if rs.Policy.LastError != "" {
		fmt.Fprintf(w, "         last reload FAILED (previous policy stays in force): %s\n", rs.Policy.LastError)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNODE\tSUBNET\tAGENT\tMETRICS")
	for _, n := range rs.Nodes {
		agent := "ready"
		switch {
		case !n.AgentRunning:
			agent = "DOWN"
		case n.Error != "":
			agent = "unreachable: " + n.Error
		case !n.Ready:
			agent = "not ready"
		}
		metrics := n.MetricsURL
		if metrics == "" {
			metrics = n.AdminAddress
		}
		fmt.Fprintf(tw, "%s\t%s\t%s (pid %d)\t%s\n", n.Name, n.Subnet, agent, n.AgentPID, metrics)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPOD\tNODE\tIP\tSPIFFE ID\tCERT EXPIRES\tREDIRECTION\tPROCESS")
	for _, p := range rs.Pods {
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, p.Node, firstIP(p.PodStatus), dash(p.SPIFFEID),
			expiry(p.CertNotAfter, now), redirection(p.Redirection), process(p))
	}
	for _, x := range rs.Externals {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Name, "(external)", firstIP(x.PodStatus), "-", "-", "outside the mesh", process(x))
	}
	tw.Flush()
	if len(rs.Events) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(rs.Events)) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, rs.Events[k]))
		}
		fmt.Fprintf(w, "\nevents   %s\n", strings.Join(parts, " "))
	}
	if len(rs.Recent) > 0 {
		fmt.Fprintln(w, "\nrecent verdicts")
		recent := rs.Recent
		if len(recent) > 10 {
			recent = recent[len(recent)-10:]
		}
		for _, e := range recent {
			fmt.Fprintln(w, "  "+eventLine(e))
		}
	}
}

// eventLine is one data plane event for a human.
func eventLine(e control.Event) string {
	verdict := "DENY "
	switch {
	case e.Kind == "flow_closed":
		verdict = "ALLOW"
	case e.Kind == "denied" && !e.Enforced:
		verdict = "AUDIT"
	}
	who := e.Source
	if e.SourceID != "" {
		who += " (" + e.SourceID + ")"
	}
	to := e.Destination
	if e.DestID != "" {
		to += " (" + e.DestID + ")"
	}
	line := fmt.Sprintf("%s %s %s %s -> %s", e.Time.Format("15:04:05"), verdict, e.Direction, who, to)
	switch {
	case e.Kind == "flow_closed":
	case e.Rule != "":
		line += ": " + e.Kind + ", " + e.Reason + " (" + e.Rule + ")"
	case e.Reason != "":
		line += ": " + e.Kind + ", " + e.Reason
	default:
		line += ": " + e.Kind
	}
	if e.Error != "" && e.Kind != "flow_closed" {
		line += ": " + e.Error
	}
	return line
}

func firstIP(p control.PodStatus) string {
	if len(p.IPs) == 0 {
		return "-"
	}
	return p.IPs[0].String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func expiry(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return "in " + t.Sub(now).Round(time.Minute).String()
}

func redirection(r control.Redirection) string {
	s := r.State
	if r.Repairs > 0 {
		s += fmt.Sprintf(" (%d repairs)", r.Repairs)
	}
	return s
}

func process(p local.RunPod) string {
	switch {
	case p.ExitCode != nil:
		return fmt.Sprintf("exited (%d)", *p.ExitCode)
	case p.Running:
		return fmt.Sprintf("running (pid %d)", p.PID)
	case p.PID == 0:
		return "not started"
	}
	return "gone"
}
