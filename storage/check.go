package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// The integrity check at Open walks the bbolt file with pread before bbolt
// maps it. bbolt trusts its file: a page header overwritten with garbage
// makes it panic (at Open, where rebuilding the freelist walks every page,
// in a goroutine nothing can recover), and a file shorter than its pages
// makes the mapping fault with SIGBUS on first touch. Both killed the
// process with a Go trace and exit 2 (issue 9, item 12). Reading with
// pread instead turns either into an error naming the file and the page.
//
// What it checks is what bbolt's own `bbolt check` and its freelist rebuild
// rely on: both meta pages (magic, version, checksum; one bad meta page is
// tolerated, as bbolt does, since a crash during a commit leaves one), the
// file size against the high-water mark, the freelist page's header, and
// every branch and leaf page reachable from the root bucket, recursively
// through every bucket: page id, type, element count and bounds, overflow
// in range, no page reached twice, keys in order within each page and
// within the separators of its parent branch.
//
// It reads every reachable page once with one pread each, the walk bbolt's
// freelist rebuild does at Open anyway (see Open: NoFreelistSync), and
// about doubles Open: on a 64 MB file of 20,000 messages, warm page cache,
// Open took 75-110 ms without the check and 175-220 ms with it
// (BenchmarkOpenCheck, shared 2-core machine), so ~1.5 ms per MB. For very
// large files on slow disks the walk stops at Options.CheckTimeout (30 s by
// default) and Open goes on, with CheckReport.Complete false, rather than
// hold the service down; the log says so.

// DefaultCheckTimeout bounds the integrity check at Open.
const DefaultCheckTimeout = 30 * time.Second

// CheckReport describes the integrity check run by Open.
type CheckReport struct {
	// Pages is the number of pages read (branch, leaf and overflow).
	Pages int64
	// HighWater is the number of pages the file's meta page says it has.
	HighWater uint64
	// Complete is false when the walk stopped at the time bound before
	// reaching every page, or when no check ran (a new file).
	Complete bool
	// Took is how long the check ran.
	Took time.Duration
}

// ErrCorruptFile is wrapped by Open's error when the database file fails
// the integrity check; the CorruptError says what is wrong.
var ErrCorruptFile = errors.New("database file is corrupt")

// CorruptError is the one-line answer to a file that fails the check: the
// file, what is wrong, and how to recover.
type CorruptError struct {
	Path    string
	Problem string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: %s: %s; restore the newest backup over this file "+
		"(made by `plivo-dlr backup --out FILE`), or move the file away to start an empty database",
		e.Path, ErrCorruptFile, e.Problem)
}

func (e *CorruptError) Unwrap() error { return ErrCorruptFile }

// bbolt's on-disk format (go.etcd.io/bbolt/internal/common), version 2.
const (
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	pageHeaderSize     = 16 // id u64, flags u16, count u16, overflow u32
	elementSize        = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	metaSize           = 64 // after the page header; the checksum is its last 8 bytes
	flagBranch         = 0x01
	flagLeaf           = 0x02
	flagMeta           = 0x04
	flagFreelist       = 0x10
	leafBucketFlag     = 0x01
	pgidNoFreelist     = ^uint64(0)
	inBucketHeaderSize = 16 // root pgid u64, sequence u64
	maxCheckDepth      = 64 // a B+tree of 4 KiB pages never gets near this
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64
	txid     uint64
}

// parseMeta decodes and validates the meta page in buf.
func parseMeta(buf []byte) (boltMeta, error) {
	if len(buf) < pageHeaderSize+metaSize {
		return boltMeta{}, errors.New("short")
	}
	le := binary.LittleEndian
	if flags := le.Uint16(buf[8:]); flags != flagMeta {
		return boltMeta{}, fmt.Errorf("page type %#x, not meta", flags)
	}
	m := buf[pageHeaderSize : pageHeaderSize+metaSize]
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("not a bbolt file (bad magic)")
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	return boltMeta{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		hwm:      le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}, nil
}

// checker walks one file.
type checker struct {
	f        *os.File
	size     int64
	ps       int64
	hwm      uint64
	seen     []uint64 // bitmap of pages reached
	deadline time.Time
	report   CheckReport
	stopped  bool // the deadline passed
	reads    int
}

// errCheckStopped unwinds the walk at the deadline.
var errCheckStopped = errors.New("check stopped at its time bound")

// checkFile runs the integrity check on the file at path, holding a shared
// lock on it so that a running plivo-dlr (which holds it exclusively) makes
// it fail with ErrLocked instead of reading a file being written. A missing
// file is not checked (Open creates it).
func checkFile(path string, lockTimeout, budget time.Duration) (CheckReport, error) {
	start := time.Now()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return CheckReport{}, nil
	}
	if err != nil {
		return CheckReport{}, fmt.Errorf("check %s: %w", path, err)
	}
	defer f.Close()
	if err := flockShared(f, lockTimeout); err != nil {
		return CheckReport{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return CheckReport{}, fmt.Errorf("check %s: %w", path, err)
	}
	c := &checker{f: f, size: fi.Size(), deadline: start.Add(budget)}
	problem := c.run()
	c.report.Took = time.Since(start)
	if problem != nil {
		return c.report, &CorruptError{Path: path, Problem: problem.Error()}
	}
	c.report.Complete = !c.stopped
	return c.report, nil
}

// flockShared takes a shared flock on f, retrying until timeout.
func flockShared(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			// Wrapped as Open wraps bbolt's own lock timeout.
			return fmt.Errorf("%w (waited %s): %w", ErrLocked, timeout, bolt.ErrTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run checks the file; a nil result with c.stopped set means the deadline
// cut the walk short.
func (c *checker) run() error {
	if c.size < 2*pageHeaderSize+2*metaSize {
		return fmt.Errorf("file is %d bytes, too short for the two meta pages", c.size)
	}
	// Meta page 0 sits at offset 0 and names the page size; meta page 1
	// follows at that page size. If meta 0 is unreadable, bbolt tries the
	// OS page size for meta 1, and so does this.
	buf := make([]byte, pageHeaderSize+metaSize)
	var metas [2]boltMeta
	var errs [2]error
	if _, err := c.f.ReadAt(buf, 0); err != nil {
		return fmt.Errorf("read meta page 0: %v", err)
	}
	metas[0], errs[0] = parseMeta(buf)
	ps := int64(os.Getpagesize())
	if errs[0] == nil {
		ps = int64(metas[0].pageSize)
	}
	if _, err := c.f.ReadAt(buf, ps); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read meta page 1: %v", err)
	} else if err != nil {
		errs[1] = errors.New("beyond the end of the file")
	} else {
		metas[1], errs[1] = parseMeta(buf)
	}
	var m boltMeta
	switch {
	case errs[0] != nil && errs[1] != nil:
		return fmt.Errorf("both meta pages are invalid (page 0: %v; page 1: %v)", errs[0], errs[1])
	case errs[0] != nil:
		m = metas[1]
	case errs[1] != nil:
		m = metas[0]
	case metas[1].txid > metas[0].txid:
		m = metas[1]
	default:
		m = metas[0]
	}
	if m.pageSize < 512 || m.pageSize > 1<<16 || m.pageSize&(m.pageSize-1) != 0 {
		return fmt.Errorf("meta page names page size %d", m.pageSize)
	}
	c.ps = int64(m.pageSize)
	c.hwm = m.hwm
	c.report.HighWater = m.hwm
	if m.hwm < 3 {
		return fmt.Errorf("meta page names %d pages, fewer than a database has", m.hwm)
	}
	if need := int64(m.hwm) * c.ps; need > c.size || int64(m.hwm) > c.size/c.ps {
		return fmt.Errorf("file is %d bytes but its pages reach %d bytes: it was truncated", c.size, need)
	}
	c.seen = make([]uint64, (m.hwm+63)/64)
	c.mark(0, 0)
	c.mark(1, 0)
	if m.freelist != pgidNoFreelist {
		if err := c.checkFreelist(m.freelist); err != nil {
			return err
		}
	}
	if m.root < 2 || m.root >= m.hwm {
		return fmt.Errorf("root bucket page %d is outside pages 2..%d", m.root, m.hwm-1)
	}
	err := c.walk(m.root, nil, nil, "root", 0)
	if errors.Is(err, errCheckStopped) {
		c.stopped = true
		return nil
	}
	return err
}

func (c *checker) mark(id uint64, overflow uint32) {
	for i := uint64(0); i <= uint64(overflow); i++ {
		c.seen[(id+i)/64] |= 1 << ((id + i) % 64)
	}
}

func (c *checker) marked(id uint64) bool { return c.seen[id/64]&(1<<(id%64)) != 0 }

// readPage reads page id with its overflow pages, after checking its header.
func (c *checker) readPage(id uint64, where string, want ...uint16) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("%s: page %d is outside pages 2..%d", where, id, c.hwm-1)
	}
	// One read for the page; a second for its overflow pages, if any.
	buf := make([]byte, c.ps)
	if _, err := c.f.ReadAt(buf, int64(id)*c.ps); err != nil {
		return nil, fmt.Errorf("%s: read page %d: %v", where, id, err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(buf); got != id {
		return nil, fmt.Errorf("%s: page %d has id %d in its header", where, id, got)
	}
	flags, overflow := le.Uint16(buf[8:]), le.Uint32(buf[12:])
	if !slices.Contains(want, flags) {
		return nil, fmt.Errorf("%s: page %d has type %#x, want %s", where, id, flags, typeNames(want))
	}
	if id+uint64(overflow) >= c.hwm {
		return nil, fmt.Errorf("%s: page %d overflows %d pages past the last page %d", where, id, overflow, c.hwm-1)
	}
	for i := uint64(0); i <= uint64(overflow); i++ {
		if c.marked(id + i) {
			return nil, fmt.Errorf("%s: page %d is reached twice", where, id+i)
		}
	}
	c.mark(id, overflow)
	if overflow > 0 {
		buf = append(buf, make([]byte, int64(overflow)*c.ps)...)
		if _, err := c.f.ReadAt(buf[c.ps:], (int64(id)+1)*c.ps); err != nil {
			return nil, fmt.Errorf("%s: read page %d: %v", where, id, err)
		}
	}
	c.report.Pages += int64(overflow) + 1
	// Reading the clock is cheap next to a pread, but not free.
	if c.reads++; c.reads%256 == 0 && time.Now().After(c.deadline) {
		return nil, errCheckStopped
	}
	return buf, nil
}

func typeNames(flags []uint16) string {
	names := map[uint16]string{flagBranch: "branch", flagLeaf: "leaf", flagFreelist: "freelist"}
	var s string
	for i, f := range flags {
		if i > 0 {
			s += " or "
		}
		s += names[f]
	}
	return s
}

func (c *checker) checkFreelist(id uint64) error {
	buf, err := c.readPage(id, "freelist", flagFreelist)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	n, off := uint64(le.Uint16(buf[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF { // the real count is the first element
		n, off = le.Uint64(buf[pageHeaderSize:]), pageHeaderSize+8
	}
	if off+8*n > uint64(len(buf)) {
		return fmt.Errorf("freelist page %d lists %d ids, more than fit", id, n)
	}
	for i := uint64(0); i < n; i++ {
		if f := le.Uint64(buf[off+8*i:]); f < 2 || f >= c.hwm {
			return fmt.Errorf("freelist page %d lists page %d, outside pages 2..%d", id, f, c.hwm-1)
		}
	}
	return nil
}

// element returns the bounds-checked element i of page buf: its header
// fields and key (and value, for leaves).
func element(buf []byte, i int, leaf bool) (flags uint32, key, val []byte, child uint64, err error) {
	le := binary.LittleEndian
	at := pageHeaderSize + i*elementSize
	if at+elementSize > len(buf) {
		return 0, nil, nil, 0, fmt.Errorf("element %d lies past the page", i)
	}
	e := buf[at : at+elementSize]
	var pos, ksize, vsize uint64
	if leaf {
		flags, pos, ksize, vsize = le.Uint32(e[0:]), uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
	} else {
		pos, ksize, child = uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:])), le.Uint64(e[8:])
	}
	start := uint64(at) + pos
	if start+ksize+vsize > uint64(len(buf)) {
		return 0, nil, nil, 0, fmt.Errorf("element %d (key %d bytes, value %d bytes) lies past the page", i, ksize, vsize)
	}
	return flags, buf[start : start+ksize], buf[start+ksize : start+ksize+vsize], child, nil
}

// walk checks the subtree rooted at page id: every key in it must be in
// [lo, hi) (nil: unbounded). where names the bucket, for the message.
func (c *checker) walk(id uint64, lo, hi []byte, where string, depth int) error {
	if depth > maxCheckDepth {
		return fmt.Errorf("%s: tree deeper than %d at page %d (a cycle)", where, maxCheckDepth, id)
	}
	buf, err := c.readPage(id, where, flagBranch, flagLeaf)
	if err != nil {
		return err
	}
	leaf := binary.LittleEndian.Uint16(buf[8:]) == flagLeaf
	return c.elements(buf, id, leaf, lo, hi, where, depth)
}

// elements checks the elements of one page (buf may be an inline bucket's
// page, with id the page that holds it).
func (c *checker) elements(buf []byte, id uint64, leaf bool, lo, hi []byte, where string, depth int) error {
	n := int(binary.LittleEndian.Uint16(buf[10:]))
	if !leaf && n == 0 {
		return fmt.Errorf("%s: branch page %d has no elements", where, id)
	}
	prev := lo
	for i := 0; i < n; i++ {
		flags, key, val, child, err := element(buf, i, leaf)
		if err != nil {
			return fmt.Errorf("%s: page %d: %v", where, id, err)
		}
		if prev != nil && (bytes.Compare(key, prev) < 0 || (i > 0 && bytes.Equal(key, prev))) {
			return fmt.Errorf("%s: page %d: key %d is out of order", where, id, i)
		}
		if hi != nil && bytes.Compare(key, hi) >= 0 {
			return fmt.Errorf("%s: page %d: key %d is past its parent's next key", where, id, i)
		}
		prev = key
		if !leaf {
			var next []byte = hi
			if i+1 < n {
				_, next, _, _, err = element(buf, i+1, false)
				if err != nil {
					return fmt.Errorf("%s: page %d: %v", where, id, err)
				}
			}
			if err := c.walk(child, key, next, where, depth+1); err != nil {
				return err
			}
			continue
		}
		if flags&leafBucketFlag == 0 {
			continue
		}
		// A bucket: its root page, or an inline page after the header.
		name := fmt.Sprintf("bucket %q", key)
		if where != "root" {
			name = where + "/" + name
		}
		if len(val) < inBucketHeaderSize {
			return fmt.Errorf("%s: page %d: bucket value of %d bytes", name, id, len(val))
		}
		root := binary.LittleEndian.Uint64(val)
		if root != 0 {
			if err := c.walk(root, nil, nil, name, depth+1); err != nil {
				return err
			}
			continue
		}
		inline := val[inBucketHeaderSize:]
		if len(inline) < pageHeaderSize {
			return fmt.Errorf("%s: inline bucket on page %d is %d bytes", name, id, len(inline))
		}
		if f := binary.LittleEndian.Uint16(inline[8:]); f != flagLeaf {
			return fmt.Errorf("%s: inline bucket on page %d has type %#x, want leaf", name, id, f)
		}
		if err := c.elements(inline, id, true, nil, nil, name, depth+1); err != nil {
			return err
		}
	}
	return nil
}
