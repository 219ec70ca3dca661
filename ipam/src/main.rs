//! The `host-local` IPAM plugin binary.
fn main() {
    corral_cni::skel::main(
        &corral_ipam::HostLocal::default(),
        corral_ipam::ABOUT,
        corral_ipam::HELP,
    )
}
