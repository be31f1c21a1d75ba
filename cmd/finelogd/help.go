package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/finelog/finelog/internal/buildinfo"
)

// envVars are every environment variable finelogd reads.
var envVars = [][2]string{
	{"FINELOG_AUTH_POLICY", "auth policy JSON (a list of cidr/jwt layers); --auth-policy-file is the file form; neither: loopback peers only"},
	{"AWS_ACCESS_KEY_ID", "access key for --object-store (with AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN); never printed"},
	{"AWS_SECRET_ACCESS_KEY", "secret key for --object-store; never printed or logged"},
	{"AWS_SESSION_TOKEN", "session token for --object-store (temporary credentials)"},
	{"AWS_PROFILE", "profile read from --object-store-credentials-file (default: default)"},
	{"GOMEMLIMIT", "Go runtime soft memory limit; when set it wins over --memory-limit"},
}

// printHelp is --help: asked for, so on stdout with exit 0.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "finelogd: the finelog daemon, a durable log store with an optional relay to a global store")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: finelogd [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "flags:")
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
	fmt.Fprintln(w, "\nexamples:")
	for _, e := range []string{
		"finelogd                                              # loopback only, data in ./finelog-data",
		"finelogd --listen :7070 --data-dir /var/lib/finelog --cluster east --auth-policy-file /etc/finelog/policy.json",
		"finelogd --relay-address https://global.example:7070 --relay-key-file /etc/finelog/east.key",
		"finelogd --object-store 's3://logs/east?endpoint=http://127.0.0.1:9000'   # tier sealed segments to a local S3 server",
		"finelogd --print-config                               # the effective configuration, secrets redacted",
	} {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprintln(w, "\nenvironment:")
	for _, e := range envVars {
		fmt.Fprintf(w, "  %-22s %s\n", e[0], e[1])
	}
}

func versionLine() string { return "finelogd " + buildinfo.Read().String() }

// helpOrVersion answers --help/-h and --version before anything else, so
// they work whatever other flags are given.
func helpOrVersion(args []string, stdout io.Writer) (handled bool) {
	for _, a := range args {
		switch a {
		case "--version", "-version":
			fmt.Fprintln(stdout, versionLine())
			return true
		case "-h", "-help", "--help":
			_, fs := newFlagSet(io.Discard)
			printHelp(stdout, fs)
			return true
		case "--":
			return false
		}
	}
	return false
}
