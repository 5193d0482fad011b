package render

import (
	"encoding/json"
	"io"
)

// WriteJSON writes any value (a sweep, a verdict) as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
