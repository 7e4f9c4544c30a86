package topology

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Load reads, parses and validates a lab file. Validation runs even when parsing
// found problems, so that one run reports a bad address and a dangling link
// together; Parse notes what it could not read so that Validate does not report
// the same mistake again as a consequence. The error is Errors, sorted, unless
// the file could not be read at all.
//
// Only a regular file is read: it is opened without blocking and checked first,
// so a FIFO, a device or a directory given as the lab file is refused at once
// ("FILE: not a regular file") instead of hanging or never ending. Standard
// input is read with Read.
func Load(filename string) (*Lab, error) {
	data, err := ReadFile(filename)
	if err != nil {
		return nil, err
	}
	return parseAndValidate(data, filename)
}

// ReadFile reads the bytes of a lab file, a regular file only (see Load), up
// to one byte past the size limit, so that Parse can tell an oversized file
// apart.
func ReadFile(filename string) ([]byte, error) {
	f, err := os.OpenFile(filename, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", filename)
	}
	return ReadBytes(f)
}

// ReadBytes reads a lab file's bytes from r (standard input, say), up to one
// byte past the size limit.
func ReadBytes(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, maxFileSize+1))
}

// Read is Load of a lab file read from r (standard input, say); filename names
// it in errors.
func Read(r io.Reader, filename string) (*Lab, error) {
	data, err := ReadBytes(r)
	if err != nil {
		return nil, err
	}
	return parseAndValidate(data, filename)
}

// parseAndValidate parses a lab file's bytes and validates what it could read.
func parseAndValidate(data []byte, filename string) (*Lab, error) {
	lab, notes, errs := parse(data, filename)
	if lab != nil {
		errs = append(errs, validate(lab, notes)...)
	}
	if len(errs) > 0 {
		return lab, collapseRanges(errs, lab).sorted()
	}
	return lab, nil
}
