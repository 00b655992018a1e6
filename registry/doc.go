// Package registry stores versioned model bundles on a filesystem ([FS]) or in
// S3-compatible object storage ([S3]) and loads them back, verified; both
// implement [Store], and [OpenURL] opens either from a location string.
//
// A registry is a directory tree <root>/<model>/<version>/. Versions are
// positive decimal integers ordered numerically; the latest version of a model
// is the highest complete one. A version is complete once its manifest.json
// exists: writers put the manifest last, after every data file is written and
// synced, so readers never see a half-written version. Publish writes into a
// temporary directory and renames it into place; external writers that write
// in place and the manifest last work too. FORMAT.md, next to this file,
// specifies the files for writers in other languages.
//
// Load verifies the size and SHA-256 checksum of every file listed in the
// manifest while decoding it, and checks as it decodes all that
// [Bundle.Validate] checks. It keeps the ids and items in tables without a
// pointer per id ([Rows], [Catalog]), not in [Bundle.UserIDs] and
// [Bundle.Items]. Errors wrap [ErrNotFound], [ErrCorrupt] or [ErrInvalid] and
// name the model, version and file at fault.
//
// An [FS] has no mutable state; its methods are safe for concurrent use, also
// by several processes sharing one root.
package registry
