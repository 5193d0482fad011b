package outdir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// PrepareDir makes sure files can be written into dir before anything is
// measured, so that a run is never measured and then lost for want of a
// place to put it. It creates dir and its parents, then creates, writes
// and removes a probe file in it.
func PrepareDir(dir string) error {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return fmt.Errorf("output directory %s: exists and is not a directory: name a directory", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	if err := probeWrite(dir); err != nil {
		return fmt.Errorf("write in output directory %s: %w", dir, err)
	}
	return nil
}

// PrepareFile makes sure path can be created before anything is measured:
// its directory must exist and take a new file, and path must not be a
// directory. It leaves no file behind.
func PrepareFile(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("output file %s: is a directory: name a file", path)
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil {
		return fmt.Errorf("output file %s: %w", path, err)
	} else if !st.IsDir() {
		return fmt.Errorf("output file %s: %s is not a directory", path, dir)
	}
	if err := probeWrite(dir); err != nil {
		return fmt.Errorf("output file %s: %w", path, err)
	}
	return nil
}

// probeWrite creates, writes and removes a temporary file in dir.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".volleyscope-probe-*")
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte("volleyscope\n"))
	return errors.Join(werr, f.Close(), os.Remove(f.Name()))
}

// WriteFileAtomic writes path through fn: into a temporary file in the same
// directory, flushed to disk, then renamed over path. A reader sees the old
// file or the complete new one, never a part; on any error the temporary
// file is removed and path is left as it was.
func WriteFileAtomic(path string, fn func(io.Writer) error) error {
	a, err := createAtomic(path)
	if err != nil {
		return err
	}
	if err := fn(a.w); err != nil {
		a.abort()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return a.commit()
}
