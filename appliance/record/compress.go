package record

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// DefaultMaxUncompressed bounds decompression when the caller sets no
// limit: a decompression bomb fails instead of exhausting memory.
const DefaultMaxUncompressed = 64 << 20

var (
	zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
	zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	gzipPool   sync.Pool
	lz4Pool    = sync.Pool{New: func() any { return lz4.NewReader(nil) }}
)

// xerialMagic starts snappy data framed the way the Java client frames it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// Decompress inflates a records section compressed with c, refusing to
// produce more than limit bytes (0 means DefaultMaxUncompressed).
func Decompress(c Codec, src []byte, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxUncompressed
	}
	var out []byte
	var err error
	switch c {
	case CodecNone:
		return src, nil
	case CodecGzip:
		out, err = gunzip(src, limit)
	case CodecSnappy:
		out, err = unsnappy(src, limit)
	case CodecLZ4:
		r := lz4Pool.Get().(*lz4.Reader)
		r.Reset(bytes.NewReader(src))
		out, err = readLimited(r, limit)
		lz4Pool.Put(r)
	case CodecZstd:
		if n, herr := zstdFrameSize(src); herr == nil && n > uint64(limit) {
			return nil, fmt.Errorf("%w: zstd records decompress to %d bytes, over the %d-byte limit", ErrInvalid, n, limit)
		}
		out, err = zstdDec.DecodeAll(src, nil)
		if err == nil && len(out) > limit {
			err = fmt.Errorf("decompressed size over the %d-byte limit", limit)
		}
	default:
		return nil, fmt.Errorf("%w: unknown compression codec %d", ErrInvalid, c)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s records: %v", ErrInvalid, c, err)
	}
	return out, nil
}

func zstdFrameSize(src []byte) (uint64, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return 0, err
	}
	if !h.HasFCS {
		return 0, fmt.Errorf("no frame content size")
	}
	return h.FrameContentSize, nil
}

func gunzip(src []byte, limit int) ([]byte, error) {
	var r *gzip.Reader
	if v := gzipPool.Get(); v != nil {
		r = v.(*gzip.Reader)
		if err := r.Reset(bytes.NewReader(src)); err != nil {
			return nil, err
		}
	} else {
		var err error
		if r, err = gzip.NewReader(bytes.NewReader(src)); err != nil {
			return nil, err
		}
	}
	defer gzipPool.Put(r)
	return readLimited(r, limit)
}

func readLimited(r io.Reader, limit int) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, fmt.Errorf("decompressed size over the %d-byte limit", limit)
	}
	return out, nil
}

func unsnappy(src []byte, limit int) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialMagic) {
		return snappyBlock(nil, src, limit)
	}
	// Xerial framing: 8-byte magic, int32 version, int32 compatible
	// version, then blocks of int32 length + raw snappy block.
	if len(src) < 16 {
		return nil, fmt.Errorf("xerial header truncated")
	}
	var out []byte
	for p := src[16:]; len(p) > 0; {
		if len(p) < 4 {
			return nil, fmt.Errorf("xerial block length truncated")
		}
		n := int(binary.BigEndian.Uint32(p))
		p = p[4:]
		if n < 0 || n > len(p) {
			return nil, fmt.Errorf("xerial block of %d bytes runs past the data", n)
		}
		var err error
		if out, err = snappyBlock(out, p[:n], limit-len(out)); err != nil {
			return nil, err
		}
		p = p[n:]
	}
	return out, nil
}

// snappyBlock decodes one raw snappy block and appends it to dst.
func snappyBlock(dst, src []byte, limit int) ([]byte, error) {
	n, err := snappy.DecodedLen(src)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("decompressed size %d over the limit", n)
	}
	buf, err := snappy.Decode(nil, src)
	if err != nil {
		return nil, err
	}
	return append(dst, buf...), nil
}

// Compress compresses a records section with c.
func Compress(c Codec, src []byte) ([]byte, error) {
	switch c {
	case CodecNone:
		return src, nil
	case CodecGzip:
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		if _, err := w.Write(src); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case CodecSnappy:
		return snappy.Encode(nil, src), nil
	case CodecLZ4:
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		if _, err := w.Write(src); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case CodecZstd:
		return zstdEnc.EncodeAll(src, nil), nil
	}
	return nil, fmt.Errorf("%w: unknown compression codec %d", ErrInvalid, c)
}
