package report

import (
	"bufio"
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
func WriteFileAtomic(path string, fn func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "." // os.CreateTemp("") would pick the system's temporary directory
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<16)
	if err := fn(bw); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// os.CreateTemp makes the file 0600; results are meant to be shared.
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
