package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ztcn/ztcn/internal/workload"
)

// podRecord is what survives an agent restart: enough to attach the pod
// again without the runtime's help. The namespace's device and inode guard
// against a path that now names another namespace (inode reuse after the
// pod died, or a path re-bound while the agent was down).
type podRecord struct {
	Pod      workload.Pod `json:"pod"`
	NetnsDev uint64       `json:"netns_dev"`
	NetnsIno uint64       `json:"netns_ino"`
}

// stateStore keeps one JSON file per attached pod under dir/pods. Files are
// written to a temporary name and renamed, so a crash leaves either the old
// record or the new one, never half of one.
type stateStore struct {
	dir string
}

func newStateStore(stateDir string) *stateStore {
	if stateDir == "" {
		return nil
	}
	return &stateStore{dir: filepath.Join(stateDir, "pods")}
}

func (s *stateStore) file(uid string) string {
	// UIDs are runtime-chosen strings: escaped, so that no UID names
	// another path and two UIDs never share a file.
	return filepath.Join(s.dir, url.PathEscape(uid)+".json")
}

func (s *stateStore) save(pod workload.Pod) error {
	if s == nil || pod.NetnsPath == "" {
		// Without a namespace there is nothing to re-attach (only the
		// control API's callers, which always name one, need the record).
		return nil
	}
	dev, ino, err := netnsID(pod.NetnsPath)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(podRecord{Pod: pod, NetnsDev: dev, NetnsIno: ino}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, ".pod-*")
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("state dir: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return os.Rename(tmp.Name(), s.file(pod.UID))
}

func (s *stateStore) remove(uid string) error {
	if s == nil {
		return nil
	}
	if err := os.Remove(s.file(uid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// load returns every record, and the names of files it could not read
// (reported by the caller, then removed: a record that cannot be parsed
// cannot be re-attached either).
func (s *stateStore) load() (records []podRecord, bad map[string]error) {
	if s == nil {
		return nil, nil
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, map[string]error{s.dir: err}
	}
	bad = map[string]error{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			bad[path] = err
			continue
		}
		var r podRecord
		if err := json.Unmarshal(data, &r); err != nil || r.Pod.UID == "" {
			if err == nil {
				err = errors.New("no pod uid")
			}
			bad[path] = err
			continue
		}
		records = append(records, r)
	}
	return records, bad
}

// still says whether r's namespace is the one it was recorded with.
func (r podRecord) still() error {
	dev, ino, err := netnsID(r.Pod.NetnsPath)
	if err != nil {
		return err
	}
	if dev != r.NetnsDev || ino != r.NetnsIno {
		return fmt.Errorf("%s now names another network namespace", r.Pod.NetnsPath)
	}
	return nil
}

func netnsID(path string) (dev, ino uint64, err error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, 0, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return uint64(st.Dev), st.Ino, nil
}
