package adopt

import apierrors "k8s.io/apimachinery/pkg/api/errors"

func isConflictOrGone(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsNotFound(err)
}
