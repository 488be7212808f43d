// Package ociimage writes single-layer OCI image archives from files on disk,
// in the layout `ctr images import` reads. It is how test/k8s runs static Go
// binaries (pause, testapp, ztcn) as containers without a registry.
//
// The output is reproducible: the same files and settings always give the same
// bytes, so the same image digest, whatever the host or the time of day.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Media types and annotations of the OCI image spec and containerd.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	// AnnotationImageName is the full reference containerd's importer names
	// the image after.
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationRefName is the OCI tag of a manifest in an image layout.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// epoch is the timestamp of every file and of the image itself, for
// reproducible digests.
var epoch = time.Unix(0, 0).UTC()

// File is one regular file of the image's only layer.
type File struct {
	Path string      // absolute path inside the image, e.g. "/testapp"
	Mode fs.FileMode // permission bits, e.g. 0o755
	Data []byte
}

// Image describes an image to write.
type Image struct {
	// Names are the references the image is imported as. Short names are
	// normalised as docker and containerd's CRI do: "ztcn-e2e/testapp"
	// becomes "docker.io/ztcn-e2e/testapp:latest". At least one is required.
	Names      []string
	Files      []File
	Dirs       []string // extra empty directories, e.g. "/tmp" (mode 1777 for /tmp, 0755 otherwise)
	Entrypoint []string
	Cmd        []string
	Env        []string // default: PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/
	WorkingDir string
	User       string
	Labels     map[string]string
	OS         string // default "linux"
	Arch       string // default runtime.GOARCH
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Platform is the platform of a manifest in an index.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

type runConfig struct {
	User       string            `json:"User,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

type imageConfig struct {
	Created      time.Time `json:"created"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       runConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		Created   time.Time `json:"created"`
		CreatedBy string    `json:"created_by"`
	} `json:"history"`
}

// DefaultPath is the PATH of an image that sets no Env.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/"

// Write writes img to w as an OCI image layout tar and returns the digest of
// its manifest ("sha256:...").
func Write(w io.Writer, img Image) (string, error) {
	if len(img.Names) == 0 {
		return "", errors.New("ociimage: an image needs at least one name")
	}
	names := make([]string, 0, len(img.Names))
	for _, n := range img.Names {
		full, err := Normalize(n)
		if err != nil {
			return "", err
		}
		names = append(names, full)
	}
	if img.OS == "" {
		img.OS = "linux"
	}
	if img.Arch == "" {
		img.Arch = runtime.GOARCH
	}
	if img.Env == nil {
		img.Env = []string{DefaultPath}
	}

	layerTar, err := layer(img)
	if err != nil {
		return "", err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return "", err
	}
	zw.ModTime = epoch
	if _, err := zw.Write(layerTar); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	layerDesc := Descriptor{MediaType: MediaTypeLayer, Digest: digest(gz.Bytes()), Size: int64(gz.Len())}

	var cfg imageConfig
	cfg.Created = epoch
	cfg.Architecture = img.Arch
	cfg.OS = img.OS
	cfg.Config = runConfig{User: img.User, Env: img.Env, Entrypoint: img.Entrypoint, Cmd: img.Cmd, WorkingDir: img.WorkingDir, Labels: img.Labels}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{digest(layerTar)}
	cfg.History = append(cfg.History, struct {
		Created   time.Time `json:"created"`
		CreatedBy string    `json:"created_by"`
	}{epoch, "ztcn test/k8s/ociimage"})
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	cfgDesc := Descriptor{MediaType: MediaTypeConfig, Digest: digest(cfgJSON), Size: int64(len(cfgJSON))}

	mfJSON, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: cfgDesc, Layers: []Descriptor{layerDesc}})
	if err != nil {
		return "", err
	}
	mfDigest := digest(mfJSON)

	idx := index{SchemaVersion: 2, MediaType: MediaTypeIndex}
	for _, n := range names {
		idx.Manifests = append(idx.Manifests, Descriptor{
			MediaType: MediaTypeManifest,
			Digest:    mfDigest,
			Size:      int64(len(mfJSON)),
			Platform:  &Platform{Architecture: img.Arch, OS: img.OS},
			Annotations: map[string]string{
				AnnotationImageName: n,
				AnnotationRefName:   tagOf(n),
			},
		})
	}
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return "", err
	}

	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", idxJSON},
		{blobPath(layerDesc.Digest), gz.Bytes()},
		{blobPath(cfgDesc.Digest), cfgJSON},
		{blobPath(mfDigest), mfJSON},
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return "", err
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return "", err
		}
		if _, err := tw.Write(e.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	return mfDigest, nil
}

// layer returns the uncompressed tar of the image's files and directories.
func layer(img Image) ([]byte, error) {
	dirs := map[string]fs.FileMode{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	files := map[string]File{}
	for _, f := range img.Files {
		p := path.Clean("/" + f.Path)
		if p == "/" {
			return nil, fmt.Errorf("ociimage: file path %q names the root", f.Path)
		}
		if _, dup := files[p]; dup {
			return nil, fmt.Errorf("ociimage: file %s given twice", p)
		}
		f.Path = p
		files[p] = f
		addParents(p)
	}
	for _, d := range img.Dirs {
		p := path.Clean("/" + d)
		if p == "/" {
			continue
		}
		mode := fs.FileMode(0o755)
		if p == "/tmp" {
			mode = 0o777 | fs.ModeSticky
		}
		dirs[p] = mode
		addParents(p)
	}
	for p := range files {
		if _, clash := dirs[p]; clash {
			return nil, fmt.Errorf("ociimage: %s is both a file and a directory", p)
		}
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range sortedKeys(dirs) {
		mode := int64(dirs[d].Perm())
		if dirs[d]&fs.ModeSticky != 0 {
			mode |= 0o1000
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	for _, p := range sortedKeys(files) {
		f := files[p]
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: int64(mode), Size: int64(len(f.Data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Normalize turns a docker-style reference into the full name containerd's
// CRI plugin looks images up by: "pause:3.10" -> "docker.io/library/pause:3.10",
// "ztcn-e2e/testapp" -> "docker.io/ztcn-e2e/testapp:latest",
// "registry.k8s.io/pause:3.10" unchanged. Digest references are refused: the
// importer names images by tag.
func Normalize(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n") || strings.Contains(ref, "@") || strings.HasSuffix(ref, ":") || strings.HasSuffix(ref, "/") {
		return "", fmt.Errorf("ociimage: invalid image reference %q", ref)
	}
	name := ref
	first, rest, hasSlash := strings.Cut(name, "/")
	switch {
	case !hasSlash:
		name = "docker.io/library/" + name
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		name = "docker.io/" + first + "/" + rest
	}
	// A tag is a colon after the last slash.
	if !strings.Contains(name[strings.LastIndex(name, "/")+1:], ":") {
		name += ":latest"
	}
	repo := name[:strings.LastIndex(name, ":")]
	if repo != strings.ToLower(repo) {
		return "", fmt.Errorf("ociimage: invalid image reference %q: repository must be lower case", ref)
	}
	return name, nil
}

func tagOf(full string) string {
	return full[strings.LastIndex(full, ":")+1:]
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(d string) string {
	return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
