package hbone

import "sync"

// Copy buffers come in two sizes. A connection that is idle or trades small
// messages holds a small buffer per direction; one whose reads fill the
// small buffer (bulk transfer) switches to a large one, and back when the
// flow slows down. Pinning 2×256 KiB to every open connection would cost
// 5 GB at 10,000 idle connections.
const (
	// smallBufSize fits a typical request or response in one read and is
	// one TLS record's worth of plaintext (16 KiB).
	smallBufSize = 16 << 10
	// largeBufSize is the bulk copy size: measured on the HBONE prototype,
	// 256 KiB copies cut syscalls and goroutine wake-ups enough to matter
	// (DESIGN §8) while staying well inside the 4 MiB stream window.
	largeBufSize = 256 << 10
)

// Pools hold *[]byte so that Put stores a pointer and does not allocate.
var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, largeBufSize); return &b }}
)

// copyBuf is one direction's buffer, sized by what the flow needs.
type copyBuf struct {
	p     *[]byte
	large bool
	// shortReads counts consecutive reads that would have fit the small
	// buffer while holding the large one.
	shortReads int
}

// shrinkAfter is how many consecutive small reads make a bulk flow count as
// slowed down. One short read is normal at the end of every burst; four in
// a row mean the sender is trickling.
const shrinkAfter = 4

func newCopyBuf() copyBuf {
	return copyBuf{p: smallBufs.Get().(*[]byte)}
}

func (c *copyBuf) bytes() []byte { return *c.p }

// adapt resizes after a read of n bytes.
func (c *copyBuf) adapt(n int) {
	switch {
	case !c.large && n == len(*c.p):
		smallBufs.Put(c.p)
		c.p, c.large, c.shortReads = largeBufs.Get().(*[]byte), true, 0
	case c.large && n <= smallBufSize:
		c.shortReads++
		if c.shortReads >= shrinkAfter {
			largeBufs.Put(c.p)
			c.p, c.large, c.shortReads = smallBufs.Get().(*[]byte), false, 0
		}
	case c.large:
		c.shortReads = 0
	}
}

func (c *copyBuf) release() {
	if c.p == nil {
		return
	}
	if c.large {
		largeBufs.Put(c.p)
	} else {
		smallBufs.Put(c.p)
	}
	c.p = nil
}
