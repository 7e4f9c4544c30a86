package kernel

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Refused reports whether err is the kernel refusing a request for what it
// asks, not for the moment it asked: an invalid value, a feature this kernel
// lacks, a permission. Running `up` again sends the same request and meets the
// same refusal, so the user must change the file (or the machine) first. Races
// (an object that appeared or vanished meanwhile), interruptions and a full
// buffer are not refusals: the next `up` starts from what is there and converges.
func Refused(err error) bool {
	for _, errno := range []unix.Errno{unix.EINVAL, unix.ERANGE, unix.EOPNOTSUPP, unix.EPERM, unix.EACCES,
		unix.EAFNOSUPPORT, unix.EPROTONOSUPPORT, unix.ENOTSUP, unix.EROFS} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
