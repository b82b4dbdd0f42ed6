/*
 * berth-mountctl: the mount syscalls Node and util-linux 2.38 do not offer.
 *
 *   berth-mountctl rro SOURCE TARGET
 *       Clones the mount tree at SOURCE (every submount), makes the whole clone read-only and private
 *       with one mount_setattr(AT_RECURSIVE) call, and attaches it at TARGET (an existing file or
 *       directory of the same type). The clone is atomic: no moment exists where a submount of TARGET is
 *       writable. runc 1.2 calls this option "rro"; runc 1.1 has no such option.
 *
 * Exit status 0 on success; 1 with one line "berth-mountctl: <step>: <strerror>" on stderr otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fail(const char *step) {
  fprintf(stderr, "berth-mountctl: %s: %s\n", step, strerror(errno));
  return 1;
}

static int recursive_read_only(const char *source, const char *target) {
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (tree < 0) return fail("open_tree");
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_RDONLY;
  attr.propagation = MS_PRIVATE;
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
    return fail("mount_setattr");
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0) return fail("move_mount");
  close(tree);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "rro") == 0) return recursive_read_only(argv[2], argv[3]);
  fprintf(stderr, "usage: berth-mountctl rro SOURCE TARGET\n");
  return 2;
}
