package apiserver

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/ferryhq/ferry/apiserver/listquery"
	"github.com/ferryhq/ferry/connectors/secretscrub"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
	"github.com/nats-io/nats.go/jetstream"
)

// SecretInfo is a secret as listed: never its value.
type SecretInfo struct {
	Name      string    `json:"name"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
	Version   uint64    `json:"version"` // the ETag for If-Match
}

type putSecretRequest struct {
	Value string `json:"value"`
}

// secretRecord is the stored secret: AES-256-GCM under the master key, with
// the tenant and name as additional data, so a ciphertext copied to another
// tenant or name does not decrypt.
type secretRecord struct {
	Name       string    `json:"name"`
	Nonce      []byte    `json:"nonce"`
	Ciphertext []byte    `json:"ciphertext"`
	UpdatedAt  time.Time `json:"updatedAt"`
	UpdatedBy  string    `json:"updatedBy"`
}

// secretNameRe is lang's secret() name syntax.
var secretNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,254}$`)

// ErrSecretNotFound is returned by the Secrets resolver.
var ErrSecretNotFound = errors.New("secret not found")

const maxSecretBytes = 64 << 10

func secretKey(tenant, name string) string {
	return tenant + "." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

func (s *Server) aead() (cipher.AEAD, error) {
	if len(s.opts.MasterKey) != 32 {
		return nil, newProblem(http.StatusServiceUnavailable, probUnavailable, "secrets are disabled: the server has no master key (FERRY_MASTER_KEY)")
	}
	block, err := aes.NewCipher(s.opts.MasterKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func secretAD(tenant, name string) []byte {
	return []byte("ferry-secret-v1\x00" + tenant + "\x00" + name)
}

// Secrets is the resolver runs of tenant use for secret("name").
func (s *Server) Secrets(tenant string) func(name string) (string, error) {
	return func(name string) (string, error) {
		return s.secretValue(context.Background(), tenant, name)
	}
}

func (s *Server) secretValue(ctx context.Context, tenant, name string) (string, error) {
	g, err := s.aead()
	if err != nil {
		return "", errors.New("secrets are disabled: the server has no master key")
	}
	var rec secretRecord
	_, found, err := getJSON(ctx, s.st.secrets, secretKey(tenant, name), &rec)
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("%w: %q (set it with PUT /v1/secrets/%s)", ErrSecretNotFound, name, name)
	}
	plain, err := g.Open(nil, rec.Nonce, rec.Ciphertext, secretAD(tenant, name))
	if err != nil {
		return "", fmt.Errorf("secret %q does not decrypt with this master key: %w", name, err)
	}
	return string(plain), nil
}

func secretNameParam(r *http.Request) (string, *Problem) {
	name := r.PathValue("name")
	if !secretNameRe.MatchString(name) {
		return "", newProblem(http.StatusNotFound, probNotFound, "secret %q not found (names are letters, digits, '_', '-', '.' and '/')", name)
	}
	return name, nil
}

func (s *Server) putSecret(w http.ResponseWriter, r *http.Request, p *Principal) error {
	g, err := s.aead()
	if err != nil {
		return err
	}
	name, prob := secretNameParam(r)
	if prob != nil {
		return prob
	}
	var req putSecretRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	if len(req.Value) > maxSecretBytes {
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, "a secret holds at most %d bytes", maxSecretBytes)
	}
	key := secretKey(p.Tenant, name)
	var old secretRecord
	kvrev, found, err := getJSON(r.Context(), s.st.secrets, key, &old)
	if err != nil {
		return err
	}
	if found {
		// Replacing a secret is an update: If-Match its version (or *).
		if prob := checkIfMatch(r, kvETag(kvrev), true); prob != nil {
			return prob
		}
	} else if im := r.Header.Get("If-Match"); im != "" && strings.TrimSpace(im) != "*" {
		return notFound(fmt.Sprintf("secret %q", name))
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	rec := secretRecord{Name: name, Nonce: nonce, Ciphertext: g.Seal(nil, nonce, []byte(req.Value), secretAD(p.Tenant, name)),
		UpdatedAt: s.now().UTC(), UpdatedBy: p.KeyID}
	b, _ := json.Marshal(rec)
	var rev uint64
	if found {
		rev, err = s.st.secrets.Update(r.Context(), key, b, kvrev)
	} else {
		rev, err = s.st.secrets.Create(r.Context(), key, b)
	}
	if isConflict(err) {
		return newProblem(http.StatusPreconditionFailed, probPrecondition, "secret %q changed meanwhile; retry", name)
	}
	if err != nil {
		return err
	}
	action := "secret.create"
	status := http.StatusCreated
	if found {
		action, status = "secret.update", http.StatusOK
	}
	s.audit(r.Context(), p.Tenant, p, action, "secrets/"+name, 0, "")
	w.Header().Set("ETag", kvETag(rev))
	writeJSON(w, r, status, SecretInfo{Name: name, UpdatedAt: rec.UpdatedAt, UpdatedBy: rec.UpdatedBy, Version: rev})
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, p *Principal) error {
	name, prob := secretNameParam(r)
	if prob != nil {
		return prob
	}
	key := secretKey(p.Tenant, name)
	var old secretRecord
	kvrev, found, err := getJSON(r.Context(), s.st.secrets, key, &old)
	if err != nil {
		return err
	}
	if !found {
		return notFound(fmt.Sprintf("secret %q", name))
	}
	if prob := checkIfMatch(r, kvETag(kvrev), true); prob != nil {
		return prob
	}
	if err := s.st.secrets.Purge(r.Context(), key, jetstream.LastRevision(kvrev)); err != nil {
		if isConflict(err) {
			return newProblem(http.StatusPreconditionFailed, probPrecondition, "secret %q changed meanwhile; retry", name)
		}
		return err
	}
	s.audit(r.Context(), p.Tenant, p, "secret.delete", "secrets/"+name, 0, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	keys, err := keysOf(r.Context(), s.st.secrets, p.Tenant+".*")
	if err != nil {
		return err
	}
	items := make([]SecretInfo, 0, len(keys))
	for _, k := range keys {
		var rec secretRecord
		rev, found, err := getJSON(r.Context(), s.st.secrets, k, &rec)
		if err != nil {
			return err
		}
		if found {
			items = append(items, SecretInfo{Name: rec.Name, UpdatedAt: rec.UpdatedAt, UpdatedBy: rec.UpdatedBy, Version: rev})
		}
	}
	if len(q.Order) == 0 {
		q.Order = []listquery.Order{{Field: "name"}}
	}
	return writeList(w, r, items, q)
}

// Secret values never leave the server in clear: they are stored encrypted,
// and a connector that puts one in an error (a configuration echoed back, a
// URL with its token) has it scrubbed before the error is recorded anywhere
// (DLQ entries, runs, events, logs, responses). Scrubbing happens where the
// values are resolved, the only place that knows them: see secretscrub.

// scrubbedSecrets resolves a tenant's secrets for one job or check and
// scrubs the values it handed out.
func (s *Server) scrubbedSecrets(tenant string) *secretscrub.Scrubber {
	return secretscrub.New(s.Secrets(tenant))
}

// programJob is runtime.ProgramJob with the tenant's secrets, the errors of
// its source and sink scrubbed of them. secrets is the job's resolver, for
// RunOptions.
func (s *Server) programJob(tenant string, prog *engine.Program, integration, revision string) (job *runtime.Job, secrets func(string) (string, error), err error) {
	sc := s.scrubbedSecrets(tenant)
	job, err = runtime.ProgramJob(tenant, prog, integration, sc.Resolve, revision)
	if err != nil {
		return nil, nil, err
	}
	job.OpenSource, job.OpenSink = sc.OpenSource(job.OpenSource), sc.OpenSink(job.OpenSink)
	return job, sc.Resolve, nil
}
