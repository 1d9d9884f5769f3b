package service

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// Page tokens of the listings this package pages (ListRoles, ListGrants,
// ListUnusedGrants) are the URL-safe base64 of a byte naming the listing
// and the last key the page returned. A token coming back is checked before
// it is used: it must name the listing it is passed to and hold a key that
// listing could have returned (a role id; a user id and a role id), so a
// token is never more than a position in its listing. The decision and
// change listings have tokens of their own (internal/audit).
type tokenKind byte

// Token kinds, one per listing.
const (
	rolesToken        tokenKind = 'R'
	grantsToken       tokenKind = 'G'
	unusedGrantsToken tokenKind = 'U'
	usersToken        tokenKind = 'S'
	requestsToken     tokenKind = 'Q'
	whoCanToken       tokenKind = 'W'
	expiringToken     tokenKind = 'E'
	reviewItemsToken  tokenKind = 'I'
	reviewsToken      tokenKind = 'V'
)

var tokenListings = map[tokenKind]string{
	rolesToken:        "ListRoles",
	grantsToken:       "ListGrants",
	unusedGrantsToken: "ListUnusedGrants",
	usersToken:        "ListUsers",
	requestsToken:     "ListAccessRequests",
	whoCanToken:       "WhoCan",
	expiringToken:     "ListExpiring",
	reviewItemsToken:  "ListReviewItems",
	reviewsToken:      "ListAccessReviews",
}

// maxTokenLength bounds a token before it is decoded: the longest key,
// ListExpiring's of a record share (a time, a principal id, its kind, a
// module, a record id, a flag and their separators), with the kind byte,
// in base64.
const maxTokenLength = (1 + 19 + 2*model.MaxSubjectLength + 3*model.MaxIDLength + 8) * 4 / 3

// roleToken is the token of a ListRoles page ending at role id.
func roleToken(id string) string { return encodeToken(rolesToken, id) }

// grantToken is the token of a grant listing's page ending at a grant.
func grantToken(kind tokenKind, userID, roleID string) string {
	return encodeToken(kind, grantKey(userID, roleID))
}

// grantKey orders grants by user, then role, as the listings return them.
func grantKey(userID, roleID string) string { return userID + "\x00" + roleID }

func encodeToken(kind tokenKind, key string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{byte(kind)}, key...))
}

// decodeRoleToken returns the role id a ListRoles token ends at; "" for no
// token, the first page.
func decodeRoleToken(tok string) (string, error) {
	key, err := decodeToken(rolesToken, tok)
	if err != nil || key == "" {
		return "", err
	}
	if model.ValidateName("page_token", key) != nil {
		return "", errForeignToken()
	}
	return key, nil
}

// decodeUserToken returns the user id a ListUsers token ends at; "" for no
// token, the first page.
func decodeUserToken(tok string) (string, error) {
	key, err := decodeToken(usersToken, tok)
	if err != nil || key == "" {
		return "", err
	}
	if model.ValidateSubjectID("page_token", key) != nil {
		return "", errForeignToken()
	}
	return key, nil
}

// reviewToken is the token of a ListAccessReviews page ending at review r:
// its start time (nanoseconds since 1970) and id, the order of the listing,
// so that a page still follows when r itself has since been dropped.
func reviewToken(r model.AccessReview) string {
	return encodeToken(reviewsToken, strconv.FormatInt(r.CreatedAt.UnixNano(), 10)+"\x00"+r.ID)
}

// decodeReviewToken returns the start time and id a ListAccessReviews
// token ends at; ok is false for no token, the first page.
func decodeReviewToken(tok string) (at time.Time, id string, ok bool, err error) {
	key, err := decodeToken(reviewsToken, tok)
	if err != nil || key == "" {
		return time.Time{}, "", false, err
	}
	nanos, id, found := strings.Cut(key, "\x00")
	n, perr := strconv.ParseInt(nanos, 10, 64)
	if !found || perr != nil || !model.ValidReviewID(id) {
		return time.Time{}, "", false, errForeignToken()
	}
	return time.Unix(0, n), id, true, nil
}

// decodeGrantToken returns the grantKey a grant listing's token of kind
// ends at; "" for no token, the first page.
func decodeGrantToken(kind tokenKind, tok string) (string, error) {
	key, err := decodeToken(kind, tok)
	if err != nil || key == "" {
		return "", err
	}
	user, role, ok := strings.Cut(key, "\x00")
	if !ok || model.ValidateSubjectID("page_token", user) != nil || model.ValidateName("page_token", role) != nil {
		return "", errForeignToken()
	}
	return key, nil
}

// decodeWhoCanToken returns the user id a WhoCan token ends at.
func decodeWhoCanToken(tok string) (string, error) {
	key, err := decodeToken(whoCanToken, tok)
	if err != nil || key == "" {
		return "", err
	}
	if model.ValidateSubjectID("page_token", key) != nil {
		return "", errForeignToken()
	}
	return key, nil
}

// decodeRequestToken returns the request key (requestKey) a
// ListAccessRequests token ends at.
func decodeRequestToken(tok string) (string, error) {
	key, err := decodeToken(requestsToken, tok)
	if err != nil || key == "" {
		return "", err
	}
	at, id, ok := strings.Cut(key, ":")
	if !ok || len(at) != 19 || strings.Trim(at, "0123456789") != "" || !model.ValidRequestID(id) {
		return "", errForeignToken()
	}
	return key, nil
}

// decodeExpiringToken returns the key (expiringKey) a ListExpiring token
// ends at.
func decodeExpiringToken(tok string) (string, error) {
	key, err := decodeToken(expiringToken, tok)
	if err != nil || key == "" {
		return "", err
	}
	at, rest, ok := strings.Cut(key, "\x00")
	if !ok || len(at) != 19 || strings.Trim(at, "0123456789") != "" || (!strings.HasPrefix(rest, "g\x00") && !strings.HasPrefix(rest, "s\x00")) {
		return "", errForeignToken()
	}
	return key, nil
}

// decodeToken returns the key of a token of kind.
func decodeToken(kind tokenKind, tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	if len(tok) > maxTokenLength {
		return "", errForeignToken()
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 2 {
		return "", errForeignToken()
	}
	if k := tokenKind(b[0]); k != kind {
		if other, ok := tokenListings[k]; ok {
			return "", model.Invalid("page_token", model.ReasonInvalidValue,
				fmt.Sprintf("was issued by %s; pass the next_page_token of a %s call", other, tokenListings[kind]))
		}
		return "", errForeignToken()
	}
	return string(b[1:]), nil
}

func errForeignToken() error {
	return model.Invalid("page_token", model.ReasonInvalidValue, "is not a token this service issued")
}
