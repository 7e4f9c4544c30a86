package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"netlab/topology"
)

// createOutput opens a file that a command writes where the user asked
// (capture -w, import -o, --cpuprofile): a new file, or a regular file it
// empties. netlab runs as root, so it refuses what a careless or hostile path
// would turn into damage: a symbolic link as the last name (one another user
// put at /tmp/x would lead the write to /etc/shadow), a FIFO (the open would
// wait for a reader forever) and a device (a disk). A new file gets perm (a
// capture of the host's interfaces is nobody else's to read: 0600).
func createOutput(path string, perm os.FileMode) (*os.File, error) {
	if st, err := os.Lstat(path); err == nil && !st.Mode().IsRegular() {
		return nil, notRegularOutput(path, st.Mode())
	}
	// O_NOFOLLOW and O_NONBLOCK: a link or a FIFO put there after the look
	// above fails the open instead of being followed or waited on.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK, perm)
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%s is a symbolic link: netlab writes no file through one", topology.Printable(path))
	case errors.Is(err, unix.ENXIO):
		return nil, notRegularOutput(path, fs.ModeNamedPipe)
	case err != nil:
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = notRegularOutput(path, st.Mode())
	}
	if err == nil {
		err = f.Truncate(0)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// writeOutput writes data to a file as createOutput opens it.
func writeOutput(path string, data []byte, perm os.FileMode) error {
	f, err := createOutput(path, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

func notRegularOutput(path string, mode fs.FileMode) error {
	kind := "not a regular file"
	switch {
	case mode&fs.ModeSymlink != 0:
		kind = "a symbolic link"
	case mode&fs.ModeNamedPipe != 0:
		kind = "a FIFO"
	case mode&fs.ModeDevice != 0:
		kind = "a device"
	case mode.IsDir():
		kind = "a directory"
	case mode&fs.ModeSocket != 0:
		kind = "a socket"
	}
	return fmt.Errorf("%s is %s: netlab writes its output to a regular file only", topology.Printable(path), kind)
}
