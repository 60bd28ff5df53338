//! The labels journal-router files an entry under.
//!
//! `unit` is the unit whose processes wrote the entry; `about_unit` is the
//! unit systemd (or coredumpd) wrote it *about*: "Started foo.service"
//! comes from PID 1 but belongs to foo.service, and `journalctl -u
//! foo.service` shows it. Keeping both lets `-u` mean what it means to
//! journalctl.

use crate::fields;
use crate::Field;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Labels<'a> {
    /// `_SYSTEMD_UNIT`, else `_SYSTEMD_USER_UNIT`, else `SYSLOG_IDENTIFIER`.
    pub unit: Option<&'a str>,
    /// `UNIT`, `USER_UNIT`, `OBJECT_SYSTEMD_UNIT` or `COREDUMP_UNIT`.
    pub about_unit: Option<&'a str>,
    /// Docker's journald driver: `CONTAINER_NAME`, `CONTAINER_ID`, `IMAGE_NAME`.
    pub container: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub image: Option<&'a str>,
    /// `SYSLOG_IDENTIFIER`, else `_COMM` (what journalctl prints before `[pid]`).
    pub identifier: Option<&'a str>,
    pub priority: Option<u8>,
    /// `_PID`, else `SYSLOG_PID`.
    pub pid: Option<i64>,
    /// The first `MESSAGE`, byte for byte.
    pub message: Option<&'a [u8]>,
    pub hostname: Option<&'a str>,
    pub machine_id: Option<&'a str>,
    pub boot_id: Option<&'a str>,
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok().filter(|s| !s.is_empty())
}

impl<'a> Labels<'a> {
    /// Labels of an entry from its fields; the first occurrence of a field
    /// wins, and values that are not UTF-8 give no label.
    pub fn of(entry_fields: &'a [Field]) -> Labels<'a> {
        let mut l = Labels::default();
        let mut systemd_unit = None;
        let mut user_unit = None;
        let mut syslog_identifier = None;
        let mut comm = None;
        let mut pid = None;
        let mut syslog_pid = None;
        let mut about: [Option<&str>; 4] = [None; 4];
        for f in entry_fields {
            let v: &'a [u8] = &f.value;
            let slot: &mut Option<&'a str> = match f.name_str() {
                fields::MESSAGE => {
                    l.message.get_or_insert(v);
                    continue;
                }
                fields::PRIORITY => {
                    if l.priority.is_none() {
                        l.priority = text(v)
                            .and_then(|s| s.trim().parse::<u8>().ok())
                            .filter(|p| *p <= 7);
                    }
                    continue;
                }
                fields::SYSTEMD_UNIT => &mut systemd_unit,
                fields::SYSTEMD_USER_UNIT => &mut user_unit,
                fields::SYSLOG_IDENTIFIER => &mut syslog_identifier,
                fields::COMM => &mut comm,
                fields::PID => &mut pid,
                fields::SYSLOG_PID => &mut syslog_pid,
                fields::UNIT => &mut about[0],
                fields::USER_UNIT => &mut about[1],
                fields::OBJECT_SYSTEMD_UNIT => &mut about[2],
                fields::COREDUMP_UNIT => &mut about[3],
                fields::CONTAINER_NAME => &mut l.container,
                fields::CONTAINER_ID => &mut l.container_id,
                fields::IMAGE_NAME => &mut l.image,
                fields::HOSTNAME => &mut l.hostname,
                fields::MACHINE_ID => &mut l.machine_id,
                fields::BOOT_ID => &mut l.boot_id,
                _ => continue,
            };
            if slot.is_none() {
                *slot = text(v);
            }
        }
        l.unit = systemd_unit.or(user_unit).or(syslog_identifier);
        l.about_unit = about.into_iter().flatten().next();
        l.identifier = syslog_identifier.or(comm);
        l.pid = pid
            .or(syslog_pid)
            .and_then(|p| p.trim().parse::<i64>().ok());
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, value: &[u8]) -> Field {
        Field {
            name: name.to_owned().into(),
            value: bytes::Bytes::copy_from_slice(value),
        }
    }

    #[test]
    fn unit_falls_back_in_order() {
        let e = [
            f("SYSLOG_IDENTIFIER", b"cron"),
            f("_SYSTEMD_USER_UNIT", b"app.service"),
        ];
        assert_eq!(Labels::of(&e).unit, Some("app.service"));
        let e = [f("SYSLOG_IDENTIFIER", b"cron")];
        assert_eq!(Labels::of(&e).unit, Some("cron"));
        assert_eq!(Labels::of(&e).identifier, Some("cron"));
        let e = [
            f("_SYSTEMD_UNIT", b"a.service"),
            f("_SYSTEMD_USER_UNIT", b"b.service"),
        ];
        assert_eq!(Labels::of(&e).unit, Some("a.service"));
    }

    #[test]
    fn about_unit_from_systemd_messages() {
        let e = [
            f("_SYSTEMD_UNIT", b"init.scope"),
            f("MESSAGE", b"Started hello.service."),
            f("UNIT", b"hello.service"),
            f("_PID", b"1"),
            f("PRIORITY", b"6"),
        ];
        let l = Labels::of(&e);
        assert_eq!(l.unit, Some("init.scope"));
        assert_eq!(l.about_unit, Some("hello.service"));
        assert_eq!(l.pid, Some(1));
        assert_eq!(l.priority, Some(6));
        assert_eq!(l.message, Some(&b"Started hello.service."[..]));
        let e = [
            f("COREDUMP_UNIT", b"x.service"),
            f("OBJECT_SYSTEMD_UNIT", b"y.service"),
        ];
        assert_eq!(Labels::of(&e).about_unit, Some("y.service"));
    }

    #[test]
    fn binary_values_do_not_label() {
        let e = [
            f("_SYSTEMD_UNIT", b"\xff\xfe"),
            f("MESSAGE", b"a\0b\xff"),
            f("PRIORITY", b"9"),
            f("CONTAINER_NAME", b"web"),
        ];
        let l = Labels::of(&e);
        assert_eq!(l.unit, None);
        assert_eq!(l.priority, None);
        assert_eq!(l.message, Some(&b"a\0b\xff"[..]));
        assert_eq!(l.container, Some("web"));
    }
}
