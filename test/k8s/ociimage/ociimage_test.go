package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"pause", "docker.io/library/pause:latest"},
		{"pause:3.10", "docker.io/library/pause:3.10"},
		{"ztcn-e2e/testapp", "docker.io/ztcn-e2e/testapp:latest"},
		{"ztcn-e2e/testapp:v1", "docker.io/ztcn-e2e/testapp:v1"},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"},
		{"localhost/ztcn:dev", "localhost/ztcn:dev"},
		{"localhost:5000/a/b", "localhost:5000/a/b:latest"},
		{"ztcn-e2e/testapp:Dev", "docker.io/ztcn-e2e/testapp:Dev"},
	} {
		got, err := Normalize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a b", "x@sha256:00", "x:", "Upper/case", "x/"} {
		if got, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", bad, got)
		}
	}
}

// TestWriteIsAnImportableLayout reads the archive back as containerd's
// importer does: index -> manifest -> config and layer, by digest.
func TestWriteIsAnImportableLayout(t *testing.T) {
	img := Image{
		Names:      []string{"ztcn-e2e/testapp", "ztcn-e2e/testapp:v1"},
		Files:      []File{{Path: "/bin/testapp", Mode: 0o755, Data: []byte("#!binary")}},
		Dirs:       []string{"/tmp"},
		Entrypoint: []string{"/bin/testapp"},
		Cmd:        []string{"serve"},
	}
	var a, b bytes.Buffer
	d1, err := Write(&a, img)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := Write(&b, img)
	if d1 != d2 || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("two writes of one image differ: %s vs %s", d1, d2)
	}

	files := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = data
	}
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %q", files["oci-layout"])
	}
	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want one per name", len(idx.Manifests))
	}
	wantNames := []string{"docker.io/ztcn-e2e/testapp:latest", "docker.io/ztcn-e2e/testapp:v1"}
	for i, m := range idx.Manifests {
		if m.Digest != d1 || m.Annotations[AnnotationImageName] != wantNames[i] {
			t.Errorf("manifest %d = %+v", i, m)
		}
	}
	blob := func(d Descriptor) []byte {
		t.Helper()
		data, ok := files[blobPath(d.Digest)]
		if !ok || digest(data) != d.Digest || int64(len(data)) != d.Size {
			t.Fatalf("blob %s missing or wrong", d.Digest)
		}
		return data
	}
	var mf manifest
	json.Unmarshal(blob(idx.Manifests[0]), &mf)
	var cfg imageConfig
	json.Unmarshal(blob(mf.Config), &cfg)
	if strings.Join(cfg.Config.Entrypoint, " ") != "/bin/testapp" || cfg.OS != "linux" || cfg.Config.Env[0] != DefaultPath {
		t.Errorf("config = %+v", cfg)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(mf.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	if digest(raw) != cfg.RootFS.DiffIDs[0] {
		t.Errorf("diff_id %s does not match the uncompressed layer", cfg.RootFS.DiffIDs[0])
	}
	var got []string
	lr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := lr.Next()
		if err != nil {
			break
		}
		got = append(got, fmt.Sprintf("%s %o", h.Name, h.Mode))
	}
	want := []string{"bin/ 755", "tmp/ 1777", "bin/testapp 755"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("layer = %v, want %v", got, want)
	}
}

func TestWriteRefusesBadImages(t *testing.T) {
	for name, img := range map[string]Image{
		"no name":        {Files: []File{{Path: "/a"}}},
		"duplicate file": {Names: []string{"a"}, Files: []File{{Path: "/a"}, {Path: "a"}}},
		"file is a dir":  {Names: []string{"a"}, Files: []File{{Path: "/tmp"}}, Dirs: []string{"/tmp"}},
		"root as file":   {Names: []string{"a"}, Files: []File{{Path: "/"}}},
	} {
		if _, err := Write(io.Discard, img); err == nil {
			t.Errorf("%s: Write succeeded", name)
		}
	}
}
