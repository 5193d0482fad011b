package probe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The recording format: magic, version, length of a JSON header, the
// header (whatever the caller needs to replay the run: client records,
// server port), then EventSize-byte records until the end.
const (
	recMagic   = "VSCOPEv1"
	recVersion = 1
)

// Recorder writes an event stream for offline replay (--record).
type Recorder struct {
	w   *bufio.Writer
	buf [EventSize]byte
}

// NewRecorder writes the header with meta (JSON) to w.
func NewRecorder(w io.Writer, meta []byte) (*Recorder, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	var hdr [16]byte
	copy(hdr[:8], recMagic)
	binary.LittleEndian.PutUint32(hdr[8:], recVersion)
	binary.LittleEndian.PutUint32(hdr[12:], uint32(len(meta)))
	if _, err := bw.Write(hdr[:]); err != nil {
		return nil, fmt.Errorf("write recording header: %w", err)
	}
	if _, err := bw.Write(meta); err != nil {
		return nil, fmt.Errorf("write recording header: %w", err)
	}
	return &Recorder{w: bw}, nil
}

// Write appends one event.
func (r *Recorder) Write(e *Event) error {
	Encode(r.buf[:], e)
	_, err := r.w.Write(r.buf[:])
	return err
}

// Flush writes buffered events.
func (r *Recorder) Flush() error { return r.w.Flush() }

// ReadRecording reads a recording, calling fn for every event (with a
// reused *Event), and returns the header's meta bytes.
func ReadRecording(r io.Reader, fn func(*Event)) ([]byte, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var hdr [16]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("read recording header: %w", err)
	}
	if string(hdr[:8]) != recMagic {
		return nil, errors.New("read recording: not a volleyscope recording")
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != recVersion {
		return nil, fmt.Errorf("read recording: version %d, want %d", v, recVersion)
	}
	n := binary.LittleEndian.Uint32(hdr[12:])
	if n > 1<<30 {
		return nil, fmt.Errorf("read recording: header of %d bytes", n)
	}
	// Read through a limit rather than preallocating n bytes: a corrupt
	// length must not allocate a gigabyte.
	meta, err := io.ReadAll(io.LimitReader(br, int64(n)))
	if err != nil || len(meta) != int(n) {
		return nil, fmt.Errorf("read recording header: truncated (%d of %d bytes)", len(meta), n)
	}
	var buf [EventSize]byte
	var e Event
	for {
		_, err := io.ReadFull(br, buf[:])
		if err == io.EOF {
			return meta, nil
		}
		if err != nil {
			return meta, fmt.Errorf("read recording: truncated event: %w", err)
		}
		if err := Decode(buf[:], &e); err != nil {
			return meta, err
		}
		fn(&e)
	}
}
