//! Names of the journal fields journal-router gives a meaning to.
//!
//! Names follow systemd.journal-fields(7); a leading underscore marks a
//! field journald itself set (trusted), two mark an address field that
//! exists only in serialised forms such as the export format.

pub const MESSAGE: &str = "MESSAGE";
pub const PRIORITY: &str = "PRIORITY";
pub const SYSLOG_IDENTIFIER: &str = "SYSLOG_IDENTIFIER";
pub const SYSLOG_PID: &str = "SYSLOG_PID";
pub const SYSTEMD_UNIT: &str = "_SYSTEMD_UNIT";
pub const SYSTEMD_USER_UNIT: &str = "_SYSTEMD_USER_UNIT";
pub const UNIT: &str = "UNIT";
pub const USER_UNIT: &str = "USER_UNIT";
pub const OBJECT_SYSTEMD_UNIT: &str = "OBJECT_SYSTEMD_UNIT";
pub const COREDUMP_UNIT: &str = "COREDUMP_UNIT";
pub const CONTAINER_NAME: &str = "CONTAINER_NAME";
pub const CONTAINER_ID: &str = "CONTAINER_ID";
pub const IMAGE_NAME: &str = "IMAGE_NAME";
pub const PID: &str = "_PID";
pub const COMM: &str = "_COMM";
pub const HOSTNAME: &str = "_HOSTNAME";
pub const MACHINE_ID: &str = "_MACHINE_ID";
pub const BOOT_ID: &str = "_BOOT_ID";
pub const TRANSPORT: &str = "_TRANSPORT";

/// Address fields of the export format.
pub const CURSOR: &str = "__CURSOR";
pub const REALTIME_TIMESTAMP: &str = "__REALTIME_TIMESTAMP";
pub const MONOTONIC_TIMESTAMP: &str = "__MONOTONIC_TIMESTAMP";

/// Units an entry is *about*, in the order `journalctl -u` consults them
/// after the entry's own unit.
pub const ABOUT_UNIT_FIELDS: [&str; 4] = [UNIT, USER_UNIT, OBJECT_SYSTEMD_UNIT, COREDUMP_UNIT];

/// Whether `name` is a valid journal field name: 1 to 64 characters of
/// `A-Z`, `0-9` and `_`, not starting with a digit.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name[0].is_ascii_digit()
        && name
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `name` is an address field (two leading underscores): these
/// describe where an entry sits, not what it says.
pub fn is_address_field(name: &[u8]) -> bool {
    name.starts_with(b"__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name(b"MESSAGE"));
        assert!(is_valid_name(b"_SYSTEMD_UNIT"));
        assert!(is_valid_name(b"__CURSOR"));
        assert!(!is_valid_name(b""));
        assert!(!is_valid_name(b"message"));
        assert!(!is_valid_name(b"1ABC"));
        assert!(!is_valid_name(b"A=B"));
        assert!(!is_valid_name(&[b'A'; 65]));
        assert!(is_address_field(b"__SEQNUM"));
        assert!(!is_address_field(b"_PID"));
    }
}
