package topology

import (
	"io"
	"os"
)

// Load reads, parses and validates a lab file. Validation runs even when parsing
// found problems, so that one run reports a bad address and a dangling link
// together; Parse notes what it could not read so that Validate does not report
// the same mistake again as a consequence. The error is Errors, sorted, unless
// the file could not be read at all.
func Load(filename string) (*Lab, error) {
	f, err := os.Open(filename)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Read one byte past the limit so that Parse can tell an oversized file apart.
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	lab, notes, errs := parse(data, filename)
	if lab != nil {
		errs = append(errs, validate(lab, notes)...)
	}
	if len(errs) > 0 {
		return lab, errs.sorted()
	}
	return lab, nil
}
