/* KVM probe (src/accel.rs embeds the assembled bytes; its unit test
 * reassembles this file with binutils and compares):
 *   as --64 -o p.o kvm_probe.S && ld -m elf_x86_64 -Ttext=0x7c00 --oformat binary -o p.bin p.o
 *
 * A 512-byte boot sector that walks the path every real guest
 * takes (real mode -> 32-bit protected mode with x87 -> 64-bit long mode
 * with paging, x87 and SSE) and then asks QEMU to exit through the
 * isa-debug-exit device (port 0xf4). QEMU exits with status (0x10 << 1) | 1
 * = 33 only if the guest got all the way; a hypervisor that cannot run
 * ordinary guests hangs, pauses with an internal error or triple-faults. */
    .code16
    .globl _start
_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    /* identity-map the first 2 MiB: PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000 */
    mov $0x1000, %di
    mov $0x1800, %cx
    rep stosw
    movw $0x2003, 0x1000
    movw $0x3003, 0x2000
    movw $0x0083, 0x3000
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $pm32

    .code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    fninit
    mov %cr4, %eax
    or $0x620, %eax           /* PAE | OSFXSR | OSXMMEXCPT */
    mov %eax, %cr4
    mov $0x1000, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx     /* EFER */
    rdmsr
    or $0x100, %eax           /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000002, %eax      /* PG | MP */
    and $0xfffffffb, %eax     /* clear EM */
    mov %eax, %cr0
    ljmp $0x18, $lm64

    .code64
lm64:
    fninit
    fld1
    fstp %st(0)
    xorps %xmm0, %xmm0
    mov $0x10, %al
    out %al, $0xf4
halt:
    hlt
    jmp halt

    .p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff  /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff  /* 0x10: data */
    .quad 0x00af9a000000ffff  /* 0x18: 64-bit code */
gdtr:
    .word gdtr - gdt - 1
    .long gdt

    .org 510
    .word 0xaa55
