// Command ociimage writes an OCI image archive for `ctr images import` from
// static binaries, with no registry and no container engine:
//
//	ociimage -o ztcn.tar -name ztcn-e2e/ztcn:dev -file bin/ztcn=/ztcn -entrypoint /ztcn
//
// -name and -file may be repeated; -file is HOSTPATH[=IMAGEPATH] (default
// IMAGEPATH: /basename). The manifest digest is printed on success.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ztcn/ztcn/test/k8s/ociimage"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var names, files, env, dirs list
	out := flag.String("o", "", "output archive (required)")
	entrypoint := flag.String("entrypoint", "", "entrypoint, split on spaces (default: the first -file)")
	cmd := flag.String("cmd", "", "default arguments, split on spaces")
	workdir := flag.String("workdir", "/", "working directory")
	user := flag.String("user", "", "user to run as (default root)")
	flag.Var(&names, "name", "image reference, repeatable (required)")
	flag.Var(&files, "file", "HOSTPATH[=IMAGEPATH], repeatable (required)")
	flag.Var(&env, "env", "KEY=VALUE, repeatable (default: a standard PATH)")
	flag.Var(&dirs, "dir", "empty directory to create, repeatable (/tmp always exists)")
	flag.Parse()
	if *out == "" || len(names) == 0 || len(files) == 0 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	img := ociimage.Image{Names: names, WorkingDir: *workdir, User: *user, Dirs: append([]string{"/tmp", "/etc"}, dirs...)}
	for _, f := range files {
		host, inImage, ok := strings.Cut(f, "=")
		if !ok {
			inImage = "/" + filepath.Base(host)
		}
		data, err := os.ReadFile(host)
		if err != nil {
			fail(err)
		}
		st, err := os.Stat(host)
		if err != nil {
			fail(err)
		}
		img.Files = append(img.Files, ociimage.File{Path: inImage, Mode: st.Mode().Perm(), Data: data})
	}
	if *entrypoint != "" {
		img.Entrypoint = strings.Fields(*entrypoint)
	} else {
		img.Entrypoint = []string{img.Files[0].Path}
	}
	if *cmd != "" {
		img.Cmd = strings.Fields(*cmd)
	}
	if len(env) > 0 {
		img.Env = append([]string{ociimage.DefaultPath}, env...)
	}

	tmp := *out + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		fail(err)
	}
	w := bufio.NewWriter(fh)
	digest, err := ociimage.Write(w, img)
	if err == nil {
		err = w.Flush()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, *out)
	}
	if err != nil {
		os.Remove(tmp)
		fail(err)
	}
	fmt.Println(digest)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ociimage:", err)
	os.Exit(1)
}
