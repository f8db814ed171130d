// trivydb writes a trivy vulnerability database (bbolt, schema version 2) for tests and benchmarks.
//
// Usage: trivydb CACHE_DIR < entries.json
//
// entries.json: {"entries": [{"path": ["debian 12", "bash", "CVE-2099-0001"], "value": {...}}, ...]}.
// Every path element but the last is a bucket; the last is the key; the value is stored as JSON.
// CACHE_DIR/db/trivy.db and CACHE_DIR/db/metadata.json are written; pass CACHE_DIR to trivy's
// --cache-dir with --skip-db-update.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

type entry struct {
	Path  []string        `json:"path"`
	Value json.RawMessage `json:"value"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: trivydb CACHE_DIR < entries.json")
		os.Exit(2)
	}
	var input struct {
		Entries []entry `json:"entries"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		fail(err)
	}
	dir := filepath.Join(os.Args[1], "db")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fail(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "trivy.db"), 0o644, nil)
	if err != nil {
		fail(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, e := range input.Entries {
			if len(e.Path) < 2 {
				return fmt.Errorf("path %v: need at least a bucket and a key", e.Path)
			}
			b, err := tx.CreateBucketIfNotExists([]byte(e.Path[0]))
			if err != nil {
				return err
			}
			for _, name := range e.Path[1 : len(e.Path)-1] {
				if b, err = b.CreateBucketIfNotExists([]byte(name)); err != nil {
					return err
				}
			}
			if err := b.Put([]byte(e.Path[len(e.Path)-1]), e.Value); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		fail(err)
	}
	if err := db.Close(); err != nil {
		fail(err)
	}
	now := time.Now().UTC()
	meta, _ := json.Marshal(map[string]any{
		"Version":      2,
		"NextUpdate":   now.Add(24 * 365 * time.Hour),
		"UpdatedAt":    now,
		"DownloadedAt": now,
	})
	if err := os.WriteFile(filepath.Join(dir, "metadata.json"), meta, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "trivydb:", err)
	os.Exit(1)
}
