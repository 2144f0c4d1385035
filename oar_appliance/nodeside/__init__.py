"""What runs on compute nodes: no database access, job data on stdin."""
