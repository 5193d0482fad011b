package breakdown

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// The recording (--record) format: what Join needs, so that a run can be
// joined again offline and in tests. All integers are little-endian.
//
//	preamble  "VSCOPEv1" (the file type), version uint32, header length uint32
//	header    JSON RecordingHeader
//
// Version 2 (written) then streams frames, each a kind byte, a payload
// length uint32 and the payload:
//
//	'E'  events: n × probe.EventSize bytes, each in probe.Encode's layout
//	'C'  a connection's records: JSON loadgen.ConnInfo length uint32, the
//	     JSON, then (t0, t1) int64 pairs; a connection may span several
//	     frames, whose records are appended in order
//	'T'  the trailer, JSON RecordingTrailer; it ends the recording, so a
//	     file without one was cut short
//
// Version 1 (read only; the files in testdata/streams) put everything but
// the events in the header ({"server_port", "measure_start_ns",
// "conns": [{"id", "tid", "local_port", "records": [[t0, t1], …]}]}),
// followed by events to the end of the file.
const (
	recMagic = "VSCOPEv1"
	// recVersion is the version written.
	recVersion = 2

	frameEvents  = 'E'
	frameConn    = 'C'
	frameTrailer = 'T'

	// eventsPerFrame: a writer sends its events in frames of up to this
	// many (56 KiB).
	eventsPerFrame = 1024
	// recordsPerFrame: a connection's records go in frames of up to this
	// many (1 MiB).
	recordsPerFrame = 1 << 16
	// maxHeader and maxFrame bound what a reader allocates for a length
	// it reads, so that a corrupt file is an error, not a huge allocation.
	maxHeader = 1 << 30
	maxFrame  = 4 + 1<<16 + recordsPerFrame*16
)

// RecordingHeader is what a recording knows before the first event.
type RecordingHeader struct {
	ServerPort uint16 `json:"server_port"` // the server's listening port (Input.ServerPort)
}

// RecordingTrailer is what a recording learns only at the end of the run.
type RecordingTrailer struct {
	MeasureStart int64 `json:"measure_start_ns"` // Input.MeasureStart
}

// RecordingWriter writes a recording as the run goes: events as the
// probe reads them, connections' records whenever the caller has them,
// and the trailer at Close. It allocates nothing per event.
type RecordingWriter struct {
	bw     *bufio.Writer
	gz     *gzip.Writer // CreateRecording with a .gz path
	file   *os.File     // CreateRecording
	prefix string       // "write recording" or "write recording PATH"
	evbuf  [eventsPerFrame * probe.EventSize]byte
	nev    int
	err    error // the first error; every later call returns it
	closed bool
}

// NewRecordingWriter writes the preamble and hdr to w and returns the
// writer for the rest. The caller closes w after Close.
func NewRecordingWriter(w io.Writer, hdr RecordingHeader) (*RecordingWriter, error) {
	return newRecordingWriter(w, hdr, "write recording")
}

// CreateRecording creates the file path (gzip-compressed when path ends
// in ".gz") and writes the preamble and hdr. Close closes the file.
func CreateRecording(path string, hdr RecordingHeader) (*RecordingWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("write recording: %w", err)
	}
	var w io.Writer = f
	var gz *gzip.Writer
	if strings.HasSuffix(path, ".gz") {
		gz = gzip.NewWriter(f)
		w = gz
	}
	rw, err := newRecordingWriter(w, hdr, "write recording "+path)
	if err != nil {
		f.Close()
		return nil, err
	}
	rw.file, rw.gz = f, gz
	return rw, nil
}

func newRecordingWriter(w io.Writer, hdr RecordingHeader, prefix string) (*RecordingWriter, error) {
	meta, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	rw := &RecordingWriter{bw: bufio.NewWriterSize(w, 1<<16), prefix: prefix}
	var pre [16]byte
	copy(pre[:8], recMagic)
	binary.LittleEndian.PutUint32(pre[8:], recVersion)
	binary.LittleEndian.PutUint32(pre[12:], uint32(len(meta)))
	rw.write(pre[:])
	rw.write(meta)
	if rw.err != nil {
		return nil, rw.err
	}
	return rw, nil
}

// write appends b unless an earlier write failed.
func (rw *RecordingWriter) write(b []byte) {
	if rw.err != nil {
		return
	}
	if _, err := rw.bw.Write(b); err != nil {
		rw.err = fmt.Errorf("%s: %w", rw.prefix, err)
	}
}

func (rw *RecordingWriter) frameHeader(kind byte, n int) {
	var h [5]byte
	h[0] = kind
	binary.LittleEndian.PutUint32(h[1:], uint32(n))
	rw.write(h[:])
}

// WriteEvent appends one event.
func (rw *RecordingWriter) WriteEvent(e *probe.Event) error {
	probe.Encode(rw.evbuf[rw.nev*probe.EventSize:], e)
	if rw.nev++; rw.nev == eventsPerFrame {
		rw.flushEvents()
	}
	return rw.err
}

func (rw *RecordingWriter) flushEvents() {
	if rw.nev == 0 {
		return
	}
	rw.frameHeader(frameEvents, rw.nev*probe.EventSize)
	rw.write(rw.evbuf[:rw.nev*probe.EventSize])
	rw.nev = 0
}

// WriteConn appends c's records to the connection with c's ID (the first
// call for an ID also records its identity). Call it once per connection
// at the end, or repeatedly with each new batch of records.
func (rw *RecordingWriter) WriteConn(c loadgen.Conn) error {
	info, err := json.Marshal(c.ConnInfo)
	if err != nil {
		return fmt.Errorf("%s: connection %d: %w", rw.prefix, c.ID, err)
	}
	recs := c.Records
	for first := true; first || len(recs) > 0; first = false {
		chunk := recs[:min(len(recs), recordsPerFrame)]
		recs = recs[len(chunk):]
		rw.frameHeader(frameConn, 4+len(info)+16*len(chunk))
		var b [16]byte
		binary.LittleEndian.PutUint32(b[:4], uint32(len(info)))
		rw.write(b[:4])
		rw.write(info)
		for _, r := range chunk {
			binary.LittleEndian.PutUint64(b[:8], uint64(r.T0))
			binary.LittleEndian.PutUint64(b[8:], uint64(r.T1))
			rw.write(b[:])
		}
	}
	return rw.err
}

// Close writes the buffered events and the trailer, flushes, and closes
// the file that CreateRecording opened. A recording without its trailer
// reads as cut short.
func (rw *RecordingWriter) Close(tr RecordingTrailer) error {
	if rw.closed {
		return rw.err
	}
	rw.closed = true
	rw.flushEvents()
	meta, err := json.Marshal(tr)
	if err != nil && rw.err == nil {
		rw.err = fmt.Errorf("%s: trailer: %w", rw.prefix, err)
	}
	rw.frameHeader(frameTrailer, len(meta))
	rw.write(meta)
	if err := rw.bw.Flush(); err != nil && rw.err == nil {
		rw.err = fmt.Errorf("%s: %w", rw.prefix, err)
	}
	if rw.gz != nil {
		if err := rw.gz.Close(); err != nil && rw.err == nil {
			rw.err = fmt.Errorf("%s: %w", rw.prefix, err)
		}
	}
	if rw.file != nil {
		if err := rw.file.Close(); err != nil && rw.err == nil {
			rw.err = fmt.Errorf("%s: %w", rw.prefix, err)
		}
		rw.file = nil
	}
	return rw.err
}

// WriteRecording writes in to path in one go (gzip-compressed when path
// ends in ".gz").
func WriteRecording(path string, in Input) error {
	w, err := CreateRecording(path, RecordingHeader{ServerPort: in.ServerPort})
	if err != nil {
		return err
	}
	for i := range in.Events {
		w.WriteEvent(&in.Events[i])
	}
	for _, c := range in.Conns {
		w.WriteConn(c)
	}
	return w.Close(RecordingTrailer{MeasureStart: in.MeasureStart})
}

// ReadRecording reads a recording (gzip-compressed or not, version 1 or
// 2) back into Join's input, events sorted by time.
func ReadRecording(path string) (Input, error) {
	f, err := os.Open(path)
	if err != nil {
		return Input{}, fmt.Errorf("read recording: %w", err)
	}
	defer f.Close()
	in, err := decodeRecording(f)
	if err != nil {
		return Input{}, fmt.Errorf("read recording %s: %w", path, err)
	}
	return in, nil
}

// DecodeRecording is ReadRecording from a reader.
func DecodeRecording(r io.Reader) (Input, error) {
	in, err := decodeRecording(r)
	if err != nil {
		return Input{}, fmt.Errorf("read recording: %w", err)
	}
	return in, nil
}

// ErrNotRecording is returned for a file that is not a volleyscope
// recording.
var ErrNotRecording = errors.New("not a volleyscope recording (made by 'volleyscope run --record')")

func decodeRecording(r io.Reader) (Input, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return Input{}, fmt.Errorf("gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	var pre [16]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Input{}, ErrNotRecording
		}
		return Input{}, err
	}
	if string(pre[:8]) != recMagic {
		return Input{}, ErrNotRecording
	}
	meta, err := readN(br, binary.LittleEndian.Uint32(pre[12:]), maxHeader)
	if err != nil {
		return Input{}, fmt.Errorf("header: %w", err)
	}
	var in Input
	switch v := binary.LittleEndian.Uint32(pre[8:]); v {
	case 1:
		err = decodeV1(br, meta, &in)
	case 2:
		err = decodeV2(br, meta, &in)
	default:
		return Input{}, fmt.Errorf("version %d: this volleyscope reads versions 1 and 2", v)
	}
	if err != nil {
		return Input{}, err
	}
	slices.SortStableFunc(in.Events, byTS)
	return in, nil
}

// readN reads an n-byte block whose length came from the file: through a
// limit rather than preallocating n, so that a corrupt length allocates
// only what the file holds.
func readN(r io.Reader, n uint32, limit int) ([]byte, error) {
	if int64(n) > int64(limit) {
		return nil, fmt.Errorf("length %d above %d: corrupt", n, limit)
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, err
	}
	if len(b) != int(n) {
		return nil, fmt.Errorf("cut short (%d of %d bytes)", len(b), n)
	}
	return b, nil
}

func decodeV1(br *bufio.Reader, meta []byte, in *Input) error {
	var hdr struct {
		ServerPort   uint16 `json:"server_port"`
		MeasureStart int64  `json:"measure_start_ns"`
		Conns        []struct {
			loadgen.ConnInfo
			Records [][2]int64 `json:"records"`
		} `json:"conns"`
	}
	if err := json.Unmarshal(meta, &hdr); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	in.ServerPort, in.MeasureStart = hdr.ServerPort, hdr.MeasureStart
	for _, rc := range hdr.Conns {
		c := loadgen.Conn{ConnInfo: rc.ConnInfo, Records: make([]loadgen.Record, len(rc.Records))}
		for i, r := range rc.Records {
			c.Records[i] = loadgen.Record{T0: r[0], T1: r[1]}
		}
		in.Conns = append(in.Conns, c)
	}
	var buf [probe.EventSize]byte
	for {
		_, err := io.ReadFull(br, buf[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("event %d: cut short: %w", len(in.Events), err)
		}
		if err := appendEvent(in, buf[:]); err != nil {
			return err
		}
	}
}

func appendEvent(in *Input, b []byte) error {
	in.Events = append(in.Events, probe.Event{})
	return probe.Decode(b, &in.Events[len(in.Events)-1])
}

func decodeV2(br *bufio.Reader, meta []byte, in *Input) error {
	var hdr RecordingHeader
	if err := json.Unmarshal(meta, &hdr); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	in.ServerPort = hdr.ServerPort
	conn := map[int]int{} // ConnInfo.ID → index in in.Conns
	for frame := 0; ; frame++ {
		var fh [5]byte
		if _, err := io.ReadFull(br, fh[:]); err != nil {
			if err == io.EOF {
				return errors.New("cut short: no trailer (the run did not finish writing it)")
			}
			return fmt.Errorf("frame %d: %w", frame, err)
		}
		b, err := readN(br, binary.LittleEndian.Uint32(fh[1:]), maxFrame)
		if err != nil {
			return fmt.Errorf("frame %d: %w", frame, err)
		}
		switch fh[0] {
		case frameEvents:
			if len(b)%probe.EventSize != 0 {
				return fmt.Errorf("frame %d: %d bytes of events, not a multiple of %d", frame, len(b), probe.EventSize)
			}
			for off := 0; off < len(b); off += probe.EventSize {
				if err := appendEvent(in, b[off:off+probe.EventSize]); err != nil {
					return err
				}
			}
		case frameConn:
			if err := decodeConn(b, in, conn); err != nil {
				return fmt.Errorf("frame %d: %w", frame, err)
			}
		case frameTrailer:
			var tr RecordingTrailer
			if err := json.Unmarshal(b, &tr); err != nil {
				return fmt.Errorf("trailer: %w", err)
			}
			in.MeasureStart = tr.MeasureStart
			return nil
		default:
			return fmt.Errorf("frame %d: unknown kind %q", frame, fh[0])
		}
	}
}

func decodeConn(b []byte, in *Input, conn map[int]int) error {
	if len(b) < 4 {
		return errors.New("connection frame cut short")
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > len(b)-4 || (len(b)-4-n)%16 != 0 {
		return fmt.Errorf("connection frame of %d bytes with %d bytes of identity", len(b), n)
	}
	var info loadgen.ConnInfo
	if err := json.Unmarshal(b[4:4+n], &info); err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	i, ok := conn[info.ID]
	if !ok {
		i = len(in.Conns)
		conn[info.ID] = i
		in.Conns = append(in.Conns, loadgen.Conn{ConnInfo: info})
	}
	c := &in.Conns[i]
	for p := b[4+n:]; len(p) > 0; p = p[16:] {
		c.Records = append(c.Records, loadgen.Record{
			T0: int64(binary.LittleEndian.Uint64(p)),
			T1: int64(binary.LittleEndian.Uint64(p[8:])),
		})
	}
	return nil
}
