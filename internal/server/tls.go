package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// TLSConfig returns the TLS configuration of the gRPC port: the server's
// certificate and key from certFile and keyFile, read again whenever
// either file changes on disk (so a rotated certificate is served without
// a restart), and, with caFile, client certificates required and verified
// against the CAs in it (read again when it changes, too). A change that
// cannot be read (a file half written) keeps the last good files in
// service and is reported to onError; the next handshake tries again.
func TLSConfig(certFile, keyFile, caFile string, onError func(error)) (*tls.Config, error) {
	k := &keyPair{cert: certFile, key: keyFile, ca: caFile}
	if err := k.load(); err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if err := k.reloadIfChanged(); err != nil && onError != nil {
			onError(err)
		}
		k.mu.RLock()
		defer k.mu.RUnlock()
		c := base.Clone()
		c.GetConfigForClient = nil
		c.Certificates = []tls.Certificate{k.pair}
		if k.pool != nil {
			c.ClientCAs, c.ClientAuth = k.pool, tls.RequireAndVerifyClientCert
		}
		return c, nil
	}
	return base, nil
}

// keyPair is the certificate, key and client CAs as last read.
type keyPair struct {
	cert, key, ca string

	mu      sync.RWMutex
	pair    tls.Certificate
	pool    *x509.CertPool
	modTime [3]time.Time
}

func (k *keyPair) files() []string { return []string{k.cert, k.key, k.ca} }

func (k *keyPair) stat() ([3]time.Time, error) {
	var out [3]time.Time
	for i, f := range k.files() {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return out, err
		}
		out[i] = fi.ModTime()
	}
	return out, nil
}

func (k *keyPair) reloadIfChanged() error {
	mt, err := k.stat()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	k.mu.RLock()
	same := mt == k.modTime
	k.mu.RUnlock()
	if same {
		return nil
	}
	return k.load()
}

func (k *keyPair) load() error {
	mt, err := k.stat()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", k.cert, k.key, err)
	}
	var pool *x509.CertPool
	if k.ca != "" {
		pem, err := os.ReadFile(k.ca)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("tls: " + k.ca + " holds no PEM certificate")
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pair, k.pool, k.modTime = pair, pool, mt
	return nil
}
