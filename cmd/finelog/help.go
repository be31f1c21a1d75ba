package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/finelog/finelog/internal/buildinfo"
)

// helpDoc is what `finelog CMD -h` prints around the flag list. Help is
// asked for, so it goes to stdout with exit 0 (`finelog push -h | less`).
type helpDoc struct {
	usage       string   // "finelog push [flags] KEY < lines"
	description string   // one line
	examples    []string // shell lines, each may end with "  # comment"
}

// helps maps a flag set name ("push", "token mint") to its help.
var helps = map[string]helpDoc{}

// envVars are every environment variable the CLI reads.
var envVars = [][2]string{
	{"FINELOG_ADDR", "finelogd URL (default http://127.0.0.1:7070); --addr wins"},
	{"FINELOG_TOKEN_FILE", "file holding a bearer token; --token-file wins"},
	{"FINELOG_AUTH_POLICY", "the server's auth policy JSON, read by `policy check` and `token mint` when --policy-file is not given"},
}

func printHelp(w io.Writer, fs *flag.FlagSet) {
	doc := helps[fs.Name()]
	if doc.description != "" {
		fmt.Fprintf(w, "finelog %s: %s\n\n", fs.Name(), doc.description)
	}
	if doc.usage != "" {
		fmt.Fprintf(w, "usage: %s\n\n", doc.usage)
	}
	fmt.Fprintln(w, "flags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if len(doc.examples) > 0 {
		fmt.Fprintln(w, "\nexamples:")
		for _, e := range doc.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	printEnv(w)
}

func printEnv(w io.Writer) {
	fmt.Fprintln(w, "\nenvironment:")
	for _, e := range envVars {
		fmt.Fprintf(w, "  %-20s %s\n", e[0], e[1])
	}
}

// parseFlags parses fs. -h prints the help to stdout and returns
// flag.ErrHelp (exit 0); a bad flag returns the error alone, with a hint
// where the help is, instead of the whole flag list on stderr.
func parseFlags(env *cliEnv, fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(env.stdout, fs)
		return err
	}
	if err != nil {
		return fmt.Errorf("%w (run 'finelog %s -h' for the flags)", err, fs.Name())
	}
	return nil
}

// wantsHelp reports whether args ask for help before any subcommand word
// (`finelog token -h`).
func wantsHelp(args []string) bool {
	return len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help")
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "finelog: command-line client for finelogd, the durable federated log store")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: finelog <command> [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nexamples:")
	for _, e := range []string{
		"echo hello | finelog push /user/job-1/task-0",
		"finelog fetch --prefix /user/job-1/ --since 1h",
		"finelog tail -f --level warn /user/job-1/task-0",
	} {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprintln(w, "\nRun 'finelog <command> -h' for a command's flags and examples; 'finelog --version' for the build.")
	printEnv(w)
}

func versionLine() string { return "finelog " + buildinfo.Read().String() }

// subcommandUsage is the error for a missing or unknown second word
// (`finelog token`, `finelog policy frob`).
func subcommandUsage(env *cliEnv, fs *flag.FlagSet, args []string) error {
	if wantsHelp(args) {
		printHelp(env.stdout, fs)
		return flag.ErrHelp
	}
	word := strings.Fields(fs.Name())
	return fmt.Errorf("want the subcommand %q (run 'finelog %s -h')", word[len(word)-1], word[0])
}
