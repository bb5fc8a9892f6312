package vhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Store remembers which key holds which name, across restarts: first
// come, first served, and a name is free again once no session of its
// key has held it for the store's TTL.
type Store interface {
	// Claim gives name to key, at now. It fails with an error wrapping
	// ErrHeld when another key holds the name.
	Claim(name, key string, now time.Time) error
	// Release notes that key's session for name ended at now: the TTL
	// counts from here.
	Release(name, key string, now time.Time) error
}

// ErrHeld is in Claim's error for a name that another key holds.
var ErrHeld = errors.New("vhost: the name belongs to another key")

// DefaultTTL is how long a name stays its key's with no session.
const DefaultTTL = 7 * 24 * time.Hour

// FileStore is a Store in one JSON file, written whole (to a temporary
// file, then renamed) at each change. The zero TTL means DefaultTTL. Its
// methods are safe for concurrent use by one process.
type FileStore struct {
	Path string
	TTL  time.Duration

	mu     sync.Mutex
	loaded bool
	names  map[string]*holding
}

// holding is one name's entry in the file.
type holding struct {
	Key      string    `json:"key"`      // SHA256 fingerprint
	Sessions int       `json:"-"`        // sessions of this process that hold it now
	Seen     time.Time `json:"lastSeen"` // when a session last held it
}

func (s *FileStore) ttl() time.Duration {
	if s.TTL <= 0 {
		return DefaultTTL
	}
	return s.TTL
}

func (s *FileStore) load() error {
	if s.loaded {
		return nil
	}
	s.names = map[string]*holding{}
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		s.loaded = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("vhost: %w", err)
	}
	if err := json.Unmarshal(b, &s.names); err != nil {
		return fmt.Errorf("vhost: %s: %w (move it away to start with no names held)", s.Path, err)
	}
	s.loaded = true
	return nil
}

func (s *FileStore) save(now time.Time) error {
	// Names past their TTL with no session are free: forget them.
	for n, h := range s.names {
		if h.Sessions == 0 && now.Sub(h.Seen) >= s.ttl() {
			delete(s.names, n)
		}
	}
	b, err := json.MarshalIndent(s.names, "", "  ")
	if err != nil {
		return fmt.Errorf("vhost: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
		return fmt.Errorf("vhost: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.Path), ".names-*")
	if err != nil {
		return fmt.Errorf("vhost: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), s.Path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("vhost: %w", werr)
	}
	return nil
}

func (s *FileStore) Claim(name, key string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	h := s.names[name]
	if h != nil && h.Key != key && (h.Sessions > 0 || now.Sub(h.Seen) < s.ttl()) {
		free := h.Seen.Add(s.ttl())
		if h.Sessions > 0 {
			return fmt.Errorf("%w, which is connected now: pick another name", ErrHeld)
		}
		return fmt.Errorf("%w; it is free again from %s if that key does not come back: pick another name", ErrHeld, free.UTC().Format(time.RFC3339))
	}
	if h == nil || h.Key != key {
		h = &holding{Key: key}
		s.names[name] = h
	}
	h.Sessions++
	h.Seen = now
	if err := s.save(now); err != nil {
		h.Sessions-- // no listener comes of it, so no Release either
		return err
	}
	return nil
}

// Held lists the names key holds at now: with a session, or within the
// TTL of its last.
func (s *FileStore) Held(key string, now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load() != nil {
		return nil
	}
	var names []string
	for n, h := range s.names {
		if h.Key == key && (h.Sessions > 0 || now.Sub(h.Seen) < s.ttl()) {
			names = append(names, n)
		}
	}
	return names
}

func (s *FileStore) Release(name, key string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	h := s.names[name]
	if h == nil || h.Key != key {
		return nil
	}
	h.Sessions = max(h.Sessions-1, 0)
	h.Seen = now
	return s.save(now)
}
