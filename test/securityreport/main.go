// Command securityreport turns the output of the security suite (`go test
// -json` of the attack and fault tests) into the table `make security`
// prints: attack or fault → what must happen → what was seen. Each test
// states its row with a log line "SECURITY<TAB>attack<TAB>expected<TAB>seen<TAB>ok".
// It exits 1 if any row or any test failed.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type row struct{ attack, expected, seen, result, test string }

func main() {
	markdown := flag.Bool("markdown", false, "print a Markdown table (seen truncated) for SECURITY.md")
	flag.Parse()
	var rows []row
	var failed []string
	s := bufio.NewScanner(os.Stdin)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var e event
		if json.Unmarshal(s.Bytes(), &e) != nil {
			continue
		}
		switch {
		case e.Action == "output" && strings.Contains(e.Output, "SECURITY\t"):
			f := strings.Split(strings.TrimRight(e.Output[strings.Index(e.Output, "SECURITY\t")+len("SECURITY\t"):], "\n"), "\t")
			if len(f) < 4 {
				continue
			}
			result := "PASS"
			if f[3] != "true" {
				result = "FAIL"
			}
			rows = append(rows, row{f[0], f[1], f[2], result, e.Test})
		case e.Action == "fail" && e.Test != "":
			failed = append(failed, e.Package+" "+e.Test)
		}
	}
	bad := 0
	for _, r := range rows {
		if r.result != "PASS" {
			bad++
		}
	}
	if *markdown {
		fmt.Println("| attack / fault | expected | seen | result |\n|---|---|---|---|")
		for _, r := range rows {
			seen := r.seen
			if len(seen) > 90 {
				seen = seen[:87] + "..."
			}
			esc := strings.NewReplacer("|", "\\|").Replace
			fmt.Printf("| %s | %s | %s | %s |\n", esc(r.attack), esc(r.expected), esc(seen), r.result)
		}
	} else {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ATTACK / FAULT\tEXPECTED\tSEEN\tRESULT")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.attack, r.expected, r.seen, r.result)
		}
		tw.Flush()
	}
	fmt.Printf("\n%d rows, %d failed\n", len(rows), bad)
	if len(failed) > 0 {
		fmt.Println("failed tests:")
		for _, f := range failed {
			fmt.Println("  " + f)
		}
	}
	if bad > 0 || len(failed) > 0 || len(rows) == 0 {
		os.Exit(1)
	}
}
