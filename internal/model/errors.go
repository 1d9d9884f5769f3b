package model

import (
	"errors"
	"fmt"
)

// Reasons name why a request failed. They travel to callers as the reason of
// a google.rpc.ErrorInfo, so they are stable API: add, never rename.
const (
	ReasonInvalidIdentifier    = "INVALID_IDENTIFIER"
	ReasonInvalidText          = "INVALID_TEXT"
	ReasonMissingField         = "MISSING_FIELD"
	ReasonUnknownModule        = "UNKNOWN_MODULE"
	ReasonUnknownVerb          = "UNKNOWN_VERB"
	ReasonUnknownFunction      = "UNKNOWN_FUNCTION"
	ReasonUnknownField         = "UNKNOWN_FIELD"
	ReasonUnknownTemplate      = "UNKNOWN_TEMPLATE"
	ReasonInvalidValue         = "INVALID_VALUE"
	ReasonTooMany              = "TOO_MANY"
	ReasonDuplicate            = "DUPLICATE"
	ReasonExpiryInPast         = "EXPIRY_IN_PAST"
	ReasonConfirmationMismatch = "CONFIRMATION_MISMATCH"

	ReasonTenantNotFound      = "TENANT_NOT_FOUND"
	ReasonRoleNotFound        = "ROLE_NOT_FOUND"
	ReasonGrantNotFound       = "GRANT_NOT_FOUND"
	ReasonDepartmentNotFound  = "DEPARTMENT_NOT_FOUND"
	ReasonMembershipNotFound  = "MEMBERSHIP_NOT_FOUND"
	ReasonUserNotFound        = "USER_NOT_FOUND" // a user the tenant does not know (UpsertUser makes one known)
	ReasonSharingRuleNotFound = "SHARING_RULE_NOT_FOUND"
	ReasonRecordShareNotFound = "RECORD_SHARE_NOT_FOUND"
	ReasonCredentialNotFound  = "CREDENTIAL_NOT_FOUND" //nolint:gosec // a name, not a secret
	ReasonRequestNotFound     = "ACCESS_REQUEST_NOT_FOUND"
	ReasonReviewNotFound      = "ACCESS_REVIEW_NOT_FOUND"
	ReasonReviewItemNotFound  = "REVIEW_ITEM_NOT_FOUND"
	ReasonActionAliasNotFound = "ACTION_ALIAS_NOT_FOUND"

	ReasonTenantExists      = "TENANT_EXISTS"
	ReasonRoleExists        = "ROLE_EXISTS"
	ReasonDepartmentExists  = "DEPARTMENT_EXISTS"
	ReasonSharingRuleExists = "SHARING_RULE_EXISTS"
	ReasonCredentialExists  = "CREDENTIAL_EXISTS" //nolint:gosec // a name, not a secret

	ReasonRoleInUse           = "ROLE_IN_USE"
	ReasonRoleCycle           = "ROLE_INHERITANCE_CYCLE"
	ReasonRoleTooDeep         = "ROLE_INHERITANCE_TOO_DEEP"
	ReasonRevisionMismatch    = "REVISION_MISMATCH"
	ReasonDepartmentInUse     = "DEPARTMENT_IN_USE"
	ReasonDepartmentCycle     = "DEPARTMENT_CYCLE"
	ReasonManagerCycle        = "MANAGER_CYCLE"
	ReasonLastSuperAdmin      = "LAST_SUPER_ADMIN"
	ReasonNotRequestable      = "ROLE_NOT_REQUESTABLE"
	ReasonRequestPending      = "ACCESS_REQUEST_PENDING"
	ReasonRequestClosed       = "ACCESS_REQUEST_CLOSED"
	ReasonUserInactive        = "USER_INACTIVE"
	ReasonReviewClosed        = "ACCESS_REVIEW_CLOSED"
	ReasonReviewItemDecided   = "REVIEW_ITEM_DECIDED"
	ReasonReviewGrantReplaced = "REVIEW_GRANT_REPLACED"
	ReasonHistoryUnavailable  = "HISTORY_UNAVAILABLE"
	ReasonHistoryAltered      = "HISTORY_ALTERED"
)

// InvalidError reports a request field that is malformed or names something
// the catalog does not know. It maps to INVALID_ARGUMENT.
type InvalidError struct {
	Field   string // the request field path, e.g. "permission.module.verb"
	Reason  string // one of the Reason constants
	Message string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Message) }

// Invalid returns an *InvalidError.
func Invalid(field, reason, message string) error {
	return &InvalidError{Field: field, Reason: reason, Message: message}
}

// NotFoundError reports a tenant, role or grant that does not exist. It maps
// to NOT_FOUND.
type NotFoundError struct {
	Reason string
	What   string // e.g. `role "sales_rep"`
}

func (e *NotFoundError) Error() string { return e.What + " not found" }

// ConflictError reports a write the current state does not allow: the thing
// already exists (Exists) or a precondition fails (a role still in use, a
// cycle). It maps to ALREADY_EXISTS or FAILED_PRECONDITION.
type ConflictError struct {
	Reason  string
	Message string
	Exists  bool
}

func (e *ConflictError) Error() string { return e.Message }

// ErrTenantNotFound is matched by every *NotFoundError about a tenant.
var ErrTenantNotFound = errors.New("tenant not found")

// Is lets errors.Is(err, ErrTenantNotFound) match tenant not-found errors.
func (e *NotFoundError) Is(target error) bool {
	return target == ErrTenantNotFound && e.Reason == ReasonTenantNotFound
}

// TenantNotFound returns the not-found error for tenant id.
func TenantNotFound(id string) error {
	return &NotFoundError{Reason: ReasonTenantNotFound, What: fmt.Sprintf("tenant %q", id)}
}

// RoleNotFound returns the not-found error for a role of a tenant.
func RoleNotFound(tenant, role string) error {
	return &NotFoundError{Reason: ReasonRoleNotFound, What: fmt.Sprintf("role %q in tenant %q", role, tenant)}
}

// CredentialNotFound returns the not-found error for a credential id.
func CredentialNotFound(id string) error {
	return &NotFoundError{Reason: ReasonCredentialNotFound, What: fmt.Sprintf("credential %q", id)}
}
