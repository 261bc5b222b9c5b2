package runsearch

import (
	"fmt"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// ErrInvalid is wrapped by every error of this package: a filter, an
// order_by clause, a page token or a max_results that cannot be used. It is a
// *structs.CodedError with structs.CodeInvalid, so structs.ErrorCode of any
// error from here says invalid_argument and the HTTP layer answers 400, as
// MLflow answers INVALID_PARAMETER_VALUE.
var ErrInvalid error = &structs.CodedError{
	Code:    structs.CodeInvalid,
	Message: "runsearch: invalid search",
}

// searchError is one mistake in a search request, with the text that names
// the offending token. Its message is the package prefix and that text only;
// the ErrInvalid it wraps supplies the code.
type searchError struct{ msg string }

func (e *searchError) Error() string { return "runsearch: " + e.msg }
func (e *searchError) Unwrap() error { return ErrInvalid }

func errorf(format string, args ...any) error {
	return &searchError{msg: fmt.Sprintf(format, args...)}
}

// quoteToken renders a token for an error message the way MLflow does,
// in single quotes, cut short so that a huge filter cannot make a huge error.
func quoteToken(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		s = s[:cut] + "…"
	}
	return "'" + s + "'"
}
