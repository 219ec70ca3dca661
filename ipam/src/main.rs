//! The `host-local` IPAM plugin binary.
corral_cni::plugin_note!();

fn main() {
    corral_cni::skel::main(
        &corral_ipam::HostLocal::default(),
        corral_ipam::ABOUT,
        corral_ipam::HELP,
    )
}
