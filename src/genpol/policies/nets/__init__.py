"""Network building blocks shared by the policy families (no policy logic here)."""
