// Package durable writes files so that a crash at any moment leaves either the old file or the
// whole new one, never a torn one: the data goes to a temporary file beside the target, which is
// fsynced, renamed over the target, and the directory is fsynced so the rename itself survives.
// Every file SYN4PSE writes goes through it.
package durable

import (
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// TempPrefix starts the name of every temporary file of this package. After a crash the owner
// of a directory may remove files whose names start with it (the model store does at open).
const TempPrefix = ".tmp-"

// WriteFile replaces path with data, with permissions perm.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Write replaces path with what write puts in the file it is given (positioned at its start),
// with permissions perm. When write fails, path is left as it was and the temporary file removed.
func Write(path string, perm fs.FileMode, write func(*os.File) error) (err error) {
	tmp := TempPath(path)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// OpenFile's mode is filtered by the umask; the caller asked for perm.
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = write(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return rename(tmp, path)
}

// Commit makes the finished file tmp (written by someone else, e.g. a C library, to a
// TempPath of path) the new path: fsync, rename, fsync of the directory. tmp is removed when
// the commit fails.
func Commit(tmp, path string) error {
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// TempPath is a fresh temporary name beside path, starting with TempPrefix.
func TempPath(path string) string {
	return filepath.Join(filepath.Dir(path), TempPrefix+filepath.Base(path)+"-"+rand.Text()[:12])
}

func rename(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir makes a rename or removal in dir durable. Windows cannot fsync a directory; its
// renames are durable once they return.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
