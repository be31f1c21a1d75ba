package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/objstore"
	"github.com/finelog/finelog/store"
)

func init() {
	register(command{
		name:    "segments",
		summary: "list segments, local and in the object store, with sizes and seq and time ranges (segments ls)",
		run:     runSegments,
	})
	helps["segments ls"] = helpDoc{
		usage:       "finelog segments ls [--data-dir DIR] [--object-store URL [--object-store-credentials-file FILE]]",
		description: "list a finelogd's segments: the local ones in its data dir and the ones its bucket's manifest records",
		examples: []string{
			"finelog segments ls --data-dir /var/lib/finelog",
			"finelog segments ls --data-dir /var/lib/finelog --object-store 's3://logs/east?endpoint=http://127.0.0.1:9000'",
			"finelog segments ls --data-dir '' --object-store s3://logs/east   # the bucket only",
		},
	}
}

// segmentRow is one line of `segments ls`.
type segmentRow struct {
	name          string
	local, remote bool
	first, last   int64
	rows, size    int64
	minMS, maxMS  int64
	object        string
}

func runSegments(ctx context.Context, env *cliEnv, args []string) error {
	fset := flag.NewFlagSet("segments ls", flag.ContinueOnError)
	dataDir := fset.String("data-dir", "./finelog-data", "finelogd's data `directory` ('' = none: list the bucket only)")
	url := fset.String("object-store", "", "the bucket `URL` finelogd tiers to (default: the data dir's own copy of the manifest)")
	credFile := fset.String("object-store-credentials-file", "", "AWS shared credentials `file` (default: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
	if len(args) == 0 || args[0] != "ls" {
		return subcommandUsage(env, fset, args)
	}
	if err := parseFlags(env, fset, args[1:]); err != nil {
		return err
	}
	if fset.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fset.Args())
	}
	if *dataDir == "" && *url == "" {
		return errors.New("nothing to list: give --data-dir, --object-store or both")
	}
	osfs := vfs.OS{}
	byName := map[string]*segmentRow{}
	if *dataDir != "" {
		local, err := store.ListSegments(osfs, filepath.Join(*dataDir, "store"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, s := range local {
			byName[s.Name] = &segmentRow{name: s.Name, local: true, first: s.First, last: s.Last, rows: s.Rows, size: s.Size, minMS: s.MinEpochMS, maxMS: s.MaxEpochMS}
		}
	}
	m, where, err := loadManifestFor(ctx, env, *dataDir, *url, *credFile)
	if err != nil {
		return err
	}
	for _, e := range m.Entries {
		r := byName[e.Segment]
		if r == nil {
			r = &segmentRow{name: e.Segment, first: e.First, last: e.Last, rows: e.Rows, size: e.Size, minMS: e.MinEpochMS, maxMS: e.MaxEpochMS}
			byName[e.Segment] = r
		}
		r.remote, r.object = true, e.Object
	}
	rows := make([]*segmentRow, 0, len(byName))
	for _, r := range byName {
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].first < rows[j].first })
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHERE\tFIRST_SEQ\tLAST_SEQ\tROWS\tBYTES\tOLDEST\tNEWEST\tSEGMENT")
	var localBytes, remoteBytes int64
	for _, r := range rows {
		w := "local"
		switch {
		case r.local && r.remote:
			w = "both"
		case r.remote:
			w = "remote"
		}
		if r.local {
			localBytes += r.size
		}
		if r.remote {
			remoteBytes += r.size
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", w, r.first, r.last, r.rows, r.size, msTime(r.minMS), msTime(r.maxMS), r.name)
	}
	tw.Flush()
	fmt.Fprintf(env.stdout, "%d segments; local %d bytes; in the bucket %d bytes (%s, manifest generation %d)\n", len(rows), localBytes, remoteBytes, where, m.Generation)
	return nil
}

func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// loadManifestFor reads the bucket's manifest, or without a URL the data
// dir's local copy (which may be ahead of the bucket by one publish).
func loadManifestFor(ctx context.Context, env *cliEnv, dataDir, url, credFile string) (objstore.Manifest, string, error) {
	if url == "" {
		p := filepath.Join(dataDir, "objstore", "manifest.json")
		data, err := vfs.ReadFile(vfs.OS{}, p)
		if errors.Is(err, fs.ErrNotExist) {
			return objstore.Manifest{}, "no object store manifest in the data dir", nil
		}
		if err != nil {
			return objstore.Manifest{}, "", err
		}
		m, err := objstore.DecodeManifest(p, data)
		return m, "local copy " + p, err
	}
	loc, err := objstore.ParseLocation(url)
	if err != nil {
		return objstore.Manifest{}, "", err
	}
	var creds objstore.Credentials
	if credFile != "" {
		data, err := vfs.ReadFile(vfs.OS{}, credFile)
		if err != nil {
			return objstore.Manifest{}, "", fmt.Errorf("--object-store-credentials-file: %w", err)
		}
		if creds, err = objstore.ParseCredentialsFile(credFile, data, env.getenv("AWS_PROFILE")); err != nil {
			return objstore.Manifest{}, "", err
		}
	} else if creds, err = objstore.CredentialsFromEnv(env.getenv); err != nil {
		return objstore.Manifest{}, "", err
	}
	b, err := objstore.OpenS3(loc, creds, objstore.S3Options{})
	if err != nil {
		return objstore.Manifest{}, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := objstore.LoadManifest(ctx, b)
	return m, loc.String(), err
}
