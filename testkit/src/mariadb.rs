//! Throwaway MariaDB databases for tests (filled in by the storage work).
