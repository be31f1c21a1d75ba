package auth

// denialCauses are every denial cause, so finelog_auth_denied_total has a
// zero series per reason from the start: an alert on a rate needs the
// series to exist before the first denial. TestEveryCauseIsPreRegistered
// keeps the list complete.
var denialCauses = []cause{
	causeNoCredential, causePeerNotAllowed, causeBearerSyntax, causeTokenMalformed,
	causeAlg, causeHeader, causeSignature, causeExpired, causeNotYetValid,
	causeIssuedFuture, causeClaims, causeAudience, causeLifetime, causeDuplicateName,
	causeBearerUnverifiable,
}
