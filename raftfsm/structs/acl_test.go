package structs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// validToken is a token that passes Validate.
func validToken(t testing.TB) ACLToken {
	t.Helper()
	accessor, secret := NewTokenIDs()
	return ACLToken{AccessorID: accessor, SecretHash: HashSecret(secret), Policies: []string{"readers"}}
}

func TestACLToken_ValidateCases(t *testing.T) {
	manyPolicies := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("p%d", i)
		}
		return out
	}
	tests := []struct {
		name string
		edit func(*ACLToken)
		want string // "" accepts; otherwise a part of the message
	}{
		{"valid", func(*ACLToken) {}, ""},
		{"management", func(tk *ACLToken) { tk.Policies = []string{ManagementPolicy} }, ""},
		{"32 policies", func(tk *ACLToken) { tk.Policies = manyPolicies(MaxTokenPolicies) }, ""},
		{"description at the limit", func(tk *ACLToken) { tk.Description = strings.Repeat("d", MaxDescriptionLen) }, ""},
		{"expiry set", func(tk *ACLToken) { tk.ExpirationTime = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }, ""},

		{"empty accessor", func(tk *ACLToken) { tk.AccessorID = "" }, "accessor_id must be 32 lowercase hex"},
		{"31-char accessor", func(tk *ACLToken) { tk.AccessorID = tk.AccessorID[:31] }, "accessor_id"},
		{"33-char accessor", func(tk *ACLToken) { tk.AccessorID += "0" }, "accessor_id"},
		{"uppercase accessor", func(tk *ACLToken) { tk.AccessorID = strings.ToUpper(tk.AccessorID) }, "accessor_id"},
		{"non-hex accessor", func(tk *ACLToken) { tk.AccessorID = "g" + tk.AccessorID[1:] }, "accessor_id"},
		{"UUID-shaped accessor", func(tk *ACLToken) { tk.AccessorID = "01234567-89ab-cdef-0123-456789abcdef" }, "accessor_id"},
		{"empty secret hash", func(tk *ACLToken) { tk.SecretHash = "" }, "secret hash must be 64 lowercase hex"},
		{"63-char secret hash", func(tk *ACLToken) { tk.SecretHash = tk.SecretHash[:63] }, "secret hash"},
		{"65-char secret hash", func(tk *ACLToken) { tk.SecretHash += "a" }, "secret hash"},
		{"uppercase secret hash", func(tk *ACLToken) { tk.SecretHash = strings.ToUpper(tk.SecretHash) }, "secret hash"},
		{"plaintext secret as hash", func(tk *ACLToken) { _, s := NewTokenIDs(); tk.SecretHash = s }, "secret hash"},
		{"secret hash with a slash", func(tk *ACLToken) { tk.SecretHash = "/" + tk.SecretHash[1:] }, "secret hash"},
		{"long description", func(tk *ACLToken) { tk.Description = strings.Repeat("d", MaxDescriptionLen+1) }, "description is longer than 4096"},
		{"no policies", func(tk *ACLToken) { tk.Policies = nil }, "policies is required"},
		{"empty policies", func(tk *ACLToken) { tk.Policies = []string{} }, "policies is required"},
		{"33 policies", func(tk *ACLToken) { tk.Policies = manyPolicies(MaxTokenPolicies + 1) }, "policies has 33 entries, more than 32"},
		{"empty policy name", func(tk *ACLToken) { tk.Policies = []string{"a", ""} }, "policies[1] is required"},
		{"uppercase policy name", func(tk *ACLToken) { tk.Policies = []string{"Readers"} }, `policies[0] "Readers" is invalid`},
		{"policy name with a slash", func(tk *ACLToken) { tk.Policies = []string{"a/b"} }, `policies[0] "a/b" is invalid`},
		{"policy name too long", func(tk *ACLToken) { tk.Policies = []string{strings.Repeat("a", 64)} }, "policies[0]"},
		{"duplicate policy", func(tk *ACLToken) { tk.Policies = []string{"a", "b", "a"} }, `policies names "a" twice`},
		{"duplicate management", func(tk *ACLToken) { tk.Policies = []string{ManagementPolicy, ManagementPolicy} }, `names "management" twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := validToken(t)
			tt.edit(&tok)
			err := tok.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", tok)
			}
			if ErrorCode(err) != CodeInvalid {
				t.Fatalf("Validate: code %q, want %q (%v)", ErrorCode(err), CodeInvalid, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestACLToken_IsManagementAndExpired(t *testing.T) {
	tok := validToken(t)
	if tok.IsManagement() {
		t.Fatal("a readers token is management")
	}
	tok.Policies = []string{"readers", ManagementPolicy}
	if !tok.IsManagement() {
		t.Fatal("a token holding management is not management")
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		exp  time.Time
		want bool
	}{
		{time.Time{}, false},
		{now.Add(time.Second), false},
		{now, true},
		{now.Add(-time.Second), true},
	} {
		tok.ExpirationTime = tt.exp
		if got := tok.Expired(now); got != tt.want {
			t.Errorf("Expired with expiry %v = %v, want %v", tt.exp, got, tt.want)
		}
	}
}

func TestACLPolicy_ValidateCases(t *testing.T) {
	tests := []struct {
		name string
		p    ACLPolicy
		want string // "" accepts
	}{
		{"valid", ACLPolicy{Name: "readers", Rules: `model "*" { policy = "read" }`}, ""},
		{"no rules", ACLPolicy{Name: "empty"}, ""},
		{"every kind", ACLPolicy{Name: "all", Rules: "model \"*\" { policy = \"read\" }\npredict \"*\" { policy = \"allow\" }\ndeployment \"*\" { policy = \"write\" }\nnode { policy = \"read\" }\noperator { policy = \"deny\" }\nacl { policy = \"read\" }\nexec { policy = \"deny\" }"}, ""},
		{"rules at the limit", ACLPolicy{Name: "big", Rules: `node { policy = "read" }` + strings.Repeat(" ", MaxPolicyRulesLen-len(`node { policy = "read" }`))}, ""},
		{"description at the limit", ACLPolicy{Name: "d", Description: strings.Repeat("x", MaxDescriptionLen)}, ""},

		{"management is built in", ACLPolicy{Name: ManagementPolicy}, `policy "management" is built in`},
		{"management with rules", ACLPolicy{Name: ManagementPolicy, Rules: `node { policy = "read" }`}, "built in"},
		{"no name", ACLPolicy{Rules: `node { policy = "read" }`}, "name is required"},
		{"uppercase name", ACLPolicy{Name: "Readers"}, `name "Readers" is invalid`},
		{"name with a slash", ACLPolicy{Name: "a/b"}, "is invalid"},
		{"long description", ACLPolicy{Name: "d", Description: strings.Repeat("x", MaxDescriptionLen+1)}, "description is longer than"},
		{"rules too long", ACLPolicy{Name: "big", Rules: strings.Repeat(" ", MaxPolicyRulesLen+1)}, "rules is longer than 65536 bytes"},
		{"unknown kind", ACLPolicy{Name: "p", Rules: "node { policy = \"read\" }\nnope \"*\" { policy = \"read\" }"}, `rules line 2: unknown kind "nope"`},
		{"bad word", ACLPolicy{Name: "p", Rules: `exec { policy = "write" }`}, `rules line 1: exec policy "write"`},
		{"syntax error", ACLPolicy{Name: "p", Rules: `model "*" {`}, "rules line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted")
			}
			if ErrorCode(err) != CodeInvalid {
				t.Fatalf("Validate: code %q, want %q (%v)", ErrorCode(err), CodeInvalid, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestHashSecret_TokenSecretIsHexSHA256(t *testing.T) {
	// Known answers: hex SHA-256 of the bytes of the secret.
	for secret, want := range map[string]string{
		"":    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	} {
		if got := HashSecret(secret); got != want {
			t.Errorf("HashSecret(%q) = %s, want %s", secret, got, want)
		}
	}
	_, secret := NewTokenIDs()
	h := HashSecret(secret)
	sum := sha256.Sum256([]byte(secret))
	if h != hex.EncodeToString(sum[:]) {
		t.Fatalf("HashSecret(%q) = %s, not hex sha256", secret, h)
	}
	if !isHex(h, 64) || h == secret || strings.Contains(h, secret) {
		t.Fatalf("HashSecret(%q) = %q: want 64 lowercase hex, not the secret", secret, h)
	}
	if HashSecret(secret) != h {
		t.Fatal("HashSecret is not deterministic")
	}
	// Changing any one character changes the hash.
	for i := 0; i < len(secret); i++ {
		b := []byte(secret)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		if HashSecret(string(b)) == h {
			t.Fatalf("changing character %d of the secret leaves the hash", i)
		}
	}
	if HashSecret(secret+" ") == h || HashSecret(strings.ToUpper(secret)) == h {
		t.Fatal("a padded or upper-cased secret hashes the same")
	}
}

func TestNewTokenIDs_Shapes(t *testing.T) {
	secretRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		accessor, secret := NewTokenIDs()
		if !isHex(accessor, 32) {
			t.Fatalf("accessor %q is not 32 lowercase hex characters", accessor)
		}
		if !secretRE.MatchString(secret) {
			t.Fatalf("secret %q is not UUID-shaped lowercase hex", secret)
		}
		if strings.ReplaceAll(secret, "-", "") == accessor {
			t.Fatal("accessor and secret are the same bits")
		}
		if seen[accessor] || seen[secret] {
			t.Fatalf("NewTokenIDs repeated %q / %q", accessor, secret)
		}
		seen[accessor], seen[secret] = true, true
		tok := ACLToken{AccessorID: accessor, SecretHash: HashSecret(secret), Policies: []string{ManagementPolicy}}
		if err := tok.Validate(); err != nil {
			t.Fatalf("a token from NewTokenIDs does not validate: %v", err)
		}
	}
}
