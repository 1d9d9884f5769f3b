package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/config"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// testCA issues certificates for the mTLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key signed by the CA, in PEM.
func (ca *testCA) issue(t *testing.T, serial int64, cn string, uri string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMutualTLS serves TLS with client certificates required: a registered
// certificate identity (URI SAN, or common name) authenticates with its
// credential's scopes; an unregistered one is UNAUTHENTICATED; a client
// without a certificate, or with one of another CA, does not connect. A
// server certificate replaced on disk is served without a restart.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, "crm ca"), newCA(t, "rogue ca")
	srvCert, srvKey := ca.issue(t, 10, "authzd", "", true)
	cfg := config.Default()
	cfg.RequireAuth = true
	cfg.TLSCert, cfg.TLSKey = writeFile(t, dir, "server.pem", srvCert), writeFile(t, dir, "server-key.pem", srvKey)
	cfg.TLSClientCA = writeFile(t, dir, "ca.pem", ca.pem)

	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	opsKey := createKey(t, a.Store(), "ops", []string{"platform"}, nil, "")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	dial := func(certPEM, keyPEM []byte, key string) *grpc.ClientConn {
		t.Helper()
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
		if key != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(auth.Bearer(key, false)))
		}
		conn, err := grpc.NewClient(lis.Addr().String(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	orders, ordersKey := ca.issue(t, 11, "orders", "spiffe://crm.example/orders", false)
	billing, billingKey := ca.issue(t, 12, "billing", "", false)
	rogue, rogueKey := ca.issue(t, 13, "rogue", "spiffe://crm.example/rogue", false)
	foreign, foreignKey := other.issue(t, 14, "orders", "spiffe://crm.example/orders", false)

	// The operator connects with a client certificate too, and a key.
	ops := dial(orders, ordersKey, opsKey)
	waitServing(t, ops)
	plat := pb.NewPlatformServiceClient(ops)
	for _, id := range []string{"spiffe://crm.example/orders", "billing"} {
		resp, err := plat.CreateKey(ctx, &pb.CreateKeyRequest{Name: id, Scopes: []string{"check"}, TenantIds: []string{"demo"}, CertificateIdentity: id})
		if err != nil || resp.GetSecret() != "" || resp.GetKey().GetCertificateIdentity() != id {
			t.Fatalf("register %s: %v %v", id, resp, err)
		}
	}
	for name, conn := range map[string]*grpc.ClientConn{"uri san": dial(orders, ordersKey, ""), "common name": dial(billing, billingKey, "")} {
		if err := checkBob(pb.NewAuthorizationServiceClient(conn)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		_, err := pb.NewAdminServiceClient(conn).ListRoleTemplates(ctx, &pb.ListRoleTemplatesRequest{})
		denied(t, name+" beyond its scope", err, "MISSING_SCOPE")
	}
	unauthenticated(t, "unregistered identity", checkBob(pb.NewAuthorizationServiceClient(dial(rogue, rogueKey, ""))))
	for name, conn := range map[string]*grpc.ClientConn{"no certificate": dial(nil, nil, ""), "another CA": dial(foreign, foreignKey, "")} {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil {
			t.Errorf("%s connected", name)
		}
	}

	// Rotate the server certificate on disk: the next handshake serves it.
	newCert, newKey := ca.issue(t, 99, "authzd", "", true)
	_ = writeFile(t, dir, "server-key.pem", newKey)
	later := time.Now().Add(2 * time.Second)
	_ = writeFile(t, dir, "server.pem", newCert)
	if err := os.Chtimes(cfg.TLSCert, later, later); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(orders, ordersKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if serial := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); serial != 99 {
		t.Errorf("after rotation the server presents certificate %d", serial)
	}
}
